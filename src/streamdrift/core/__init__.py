"""The detection core: event contract and decoding, sketches and statistics, concept detectors, the
feedback join, metrics, policy, the per-model monitor, reference profiles, the merge and the state codec.

It knows nothing of Kafka, the environment or the command line (``make lint`` checks it).
"""
