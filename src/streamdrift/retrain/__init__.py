"""The retrain listener: calls a user's retraining hook for drift events from the alerts topic."""
