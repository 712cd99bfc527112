"""streamdrift: know when a production ML model needs retraining.

The package reads as the data flows: ``decode`` → ``monitor`` → ``policy`` →
``publish`` → ``snapshot``. The core (records, decode, sketches, monitor,
policy, snapshot) knows nothing of Kafka; ``worker`` and ``kafka`` are the shell.
"""

__version__ = "0.1.0"
