"""Print the zlib preset dictionary of the state topic's values (``runtime/state_dictionary.py``).

Made once and frozen: a record compressed with a dictionary can only be read with that
same dictionary, so a changed one must get a new name and the old one stay for reading.

What it holds: the text of a model's state as ``core.state.encode_tree`` writes it (the
header line, with the model's summary as a state-topic record carries it, then the JSON
skeleton), with every number replaced by 0, for a model of the
demo's synthetic stream (``core.synthetic``, model ``credit-risk``) in its warm-up under the
default settings. zlib finds in it the key names and array layouts that every model
record repeats, which a record of a few kilobytes compressed alone pays for in each one.
Its feature names are the demo's, not those of the benchmark's stream.

    .venv/bin/python scripts/make_state_dictionary.py > /tmp/dictionary.txt
"""

from __future__ import annotations

import re
import sys

from streamdrift.core.api import Monitor
from streamdrift.core.config import MonitorSettings
from streamdrift.core.state import Seal, encode_tree
from streamdrift.core.summary import summary_doc
from streamdrift.core.synthetic import generate
from streamdrift.runtime.statetopic import SUMMARY_FIELD

EVENTS = 60  # of the synthetic stream, three models interleaved: about 20 of credit-risk's
# labels 6 predictions after theirs (the demo's 200 would give none of the 20 a label): a model with performance
# figures in its state and summary, as the benchmark's models in their warm-up have (DICTIONARY_3 and later)
FEEDBACK_DELAY = 6
NUMBER = re.compile(rb"(?<=[:\[,])-?[0-9][0-9.eE+-]*")
DISTINCT = re.compile(rb'"distinct":\{[^}]*\}')  # the demo's exact warm-up values: of no use to other models
CHECKSUM = re.compile(rb'"crc32:[0-9a-f]*"')  # after NUMBER, which takes a checksum of digits alone for a number


def dictionary() -> bytes:
    monitor = Monitor("credit-risk", MonitorSettings())
    stream = generate(EVENTS, seed=0, start_time=1_767_225_600.0, feedback_delay=FEEDBACK_DELAY)
    monitor.observe(e for _, e in stream if e["model_id"] == "credit-risk")
    seal = Seal("0" * 16, identity={"cluster": "", "group": "", "topics": ["", ""]})
    summary = {SUMMARY_FIELD: summary_doc(monitor._monitor.summary())}  # in a model record's header
    header, skeleton, _ = encode_tree(monitor._monitor.state(), seal, summary).split(b"\n", 2)
    text = DISTINCT.sub(b'"distinct":{}', header + b"\n" + skeleton)
    return CHECKSUM.sub(b'"crc32:00000000"', NUMBER.sub(b"0", text))


if __name__ == "__main__":
    sys.stdout.buffer.write(dictionary())
