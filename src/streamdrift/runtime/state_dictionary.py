"""The preset dictionary zlib compresses the state topic's values with (``statetopic.pack``).

A model record is a few kilobytes compressed on its own, and zlib starts each one knowing
nothing: the key names and array layouts of a model's state, the same in every record,
cost about a sixth of it. With a preset dictionary (RFC 1950's FDICT) that holds them,
zlib refers back to them instead: 14 % fewer bytes for a model of the benchmark's stream
in its warm-up (4,753 -> 4,065 bytes), 1 % past it, no slower (``benchmarks/bench_state_bytes.py``).
Values are compressed with ``CURRENT``, made from the state's layout of the day; a value made
with an older dictionary is read with it.

The dictionary is the text of one model's state as ``core.state.encode_tree`` writes it,
every number 0, made by ``scripts/make_state_dictionary.py`` from the demo's synthetic
stream (its feature names, not the benchmark's). It is frozen: a value compressed with a
dictionary can only be inflated with that same one, so a new dictionary gets a new name
here and the old ones stay in ``DICTIONARIES``, which a reader picks from by the
dictionary id (the Adler-32 of the dictionary) every such value carries in its zlib header.
"""

from __future__ import annotations

import zlib

DICTIONARY_1 = (
    b'{"arrays":0,"body":0,"checksum":"crc32:00000000","config":"0000000000000000","format":"streamdrift-snaps'
    b'hot","identity":{"cluster":"","group":"","topics":["",""]},"marker":"$nd","version":0}\n'
    b'{"cbpe":{"rows":0,"sums":[[0,0],[0,0],[0,0],[0,0],[0,0],[0,0],[0,0]]},"change_from":[],"concept":{"desig'
    b'n":null,"errors":0,"next_look":null,"reference":null,"runs":[0,0],"s":[0,0],"seen":0,"version":0,"watche'
    b'd":0,"watched_errors":0},"concept_from":null,"concept_versions":{},"degradation":{"degraded_windows":0,"'
    b'learnt":null,"warmup_seen":0,"warmup_sum":0,"warmup_weight":0,"windows":0},"drift_events":{},"errors_tot'
    b'al":0,"features":{"columns":{"edges":{"$nd":[0,"<f8",[0]]},"layout":{"categories":[],"edge_counts":[],"k'
    b'inds":[],"names":[]},"ref_counts":{"$nd":[0,"|u1",[0]]}},"last_scores":[],"ring":{"$nd":[0,"|u1",[0,0]]}'
    b',"rows":0,"slot":0,"slot_offsets":[[0,0],[0,0],[0,0],[0,0],[0,0]],"slot_rows":[0,0,0,0,0],"slot_times":['
    b'[0,0],[0,0],[0,0],[0,0],[0,0]],"slots_filled":0,"type_mismatches":{},"untracked_columns":0,"versions":{"'
    b'counts":{"$nd":[0,"|u1",[0,0]]},"names":[]},"warmup":{"age":{"anchor":0,"buckets":{"$nd":[0,"<i4",[0]]},'
    b'"categories":{},"counts":{"$nd":[0,"<u4",[0]]},"distinct":{},"numbers":0,"other":0},"credit_lines":{"anc'
    b'hor":0,"buckets":{"$nd":[0,"<i4",[0]]},"categories":{},"counts":{"$nd":[0,"<u4",[0]]},"distinct":{},"num'
    b'bers":0,"other":0},"debt_ratio":{"anchor":0,"buckets":{"$nd":[0,"<i4",[0]]},"categories":{},"counts":{"$'
    b'nd":[0,"<u4",[0]]},"distinct":{},"numbers":0,"other":0},"employment":{"anchor":0,"buckets":{"$nd":[0,"<i'
    b'4",[0]]},"categories":{"employed":0,"retired":0,"self_employed":0},"counts":{"$nd":[0,"<u4",[0]]},"disti'
    b'nct":{},"numbers":0,"other":0},"has_mortgage":{"anchor":0,"buckets":{"$nd":[0,"<i4",[0]]},"categories":{'
    b'"False":0,"True":0},"counts":{"$nd":[0,"<u4",[0]]},"distinct":{},"numbers":0,"other":0},"income":{"ancho'
    b'r":0,"buckets":{"$nd":[0,"<i4",[0]]},"categories":{},"counts":{"$nd":[0,"<u4",[0]]},"distinct":{},"numbe'
    b'rs":0,"other":0},"region":{"anchor":0,"buckets":{"$nd":[0,"<i4",[0]]},"categories":{"east":0,"south":0,"'
    b'west":0},"counts":{"$nd":[0,"<u4",[0]]},"distinct":{},"numbers":0,"other":0}},"warmup_rows":0},"feedback'
    b'_total":0,"join":{"carried":0,"feedback":{"bytes":0,"duplicates":0,"entries":[],"evicted":0,"evicted_byt'
    b'es":0,"expired":0,"newest":null},"joined":0,"predictions":{"bytes":0,"duplicates":0,"entries":[["credit-'
    b'risk-0",0,0,0,0,0,"v1",null],["credit-risk-1",0,0,0,0,0,"v1",null],["credit-risk-2",0,0,0,0,0,"v1",null]'
    b',["credit-risk-3",0,0,0,0,0,"v1",null],["credit-risk-4",0,0,0,0,0,"v1",null],["credit-risk-5",0,0,0,0,0,'
    b'"v1",null],["credit-risk-6",0,0,0,0,0,"v1",null],["credit-risk-7",0,0,0,0,0,"v1",null],["credit-risk-8",'
    b'0,0,0,0,0,"v1",null],["credit-risk-9",0,0,0,0,0,"v1",null],["credit-risk-10",0,0,0,0,0,"v1",null],["cred'
    b'it-risk-11",0,0,0,0,0,"v1",null],["credit-risk-12",0,0,0,0,0,"v1",null],["credit-risk-13",0,0,0,0,0,"v1"'
    b',null],["credit-risk-14",0,0,0,0,0,"v1",null],["credit-risk-15",0,0,0,0,0,"v1",null],["credit-risk-16",0'
    b',0,0,0,0,"v1",null],["credit-risk-17",0,0,0,0,0,"v1",null],["credit-risk-18",0,0,0,0,0,"v1",null],["cred'
    b'it-risk-19",0,0,0,0,0,"v1",null]],"evicted":0,"evicted_bytes":0,"expired":0,"newest":0},"recent":[],"wat'
    b'ermark":0},"labelled_total":0,"labels":{"columns":{"edges":{"$nd":[0,"<f8",[0]]},"layout":{"categories":'
    b'[],"edge_counts":[],"kinds":[],"names":[]},"ref_counts":{"$nd":[0,"|u1",[0]]}},"last_scores":[],"ring":{'
    b'"$nd":[0,"|u1",[0,0]]},"rows":0,"slot":0,"slot_offsets":[[0,0],[0,0],[0,0],[0,0],[0,0]],"slot_rows":[0,0'
    b',0,0,0],"slot_times":[[0,0],[0,0],[0,0],[0,0],[0,0]],"slots_filled":0,"type_mismatches":{},"untracked_co'
    b'lumns":0,"versions":{"counts":{"$nd":[0,"|u1",[0,0]]},"names":[]},"warmup":{},"warmup_rows":0},"last_dri'
    b'ft":null,"last_event_time":0,"last_version":"v1","outputs":{"columns":{"edges":{"$nd":[0,"<f8",[0]]},"la'
    b'yout":{"categories":[],"edge_counts":[],"kinds":[],"names":[]},"ref_counts":{"$nd":[0,"|u1",[0]]}},"last'
    b'_scores":[],"ring":{"$nd":[0,"|u1",[0,0]]},"rows":0,"slot":0,"slot_offsets":[[0,0],[0,0],[0,0],[0,0],[0,'
    b'0]],"slot_rows":[0,0,0,0,0],"slot_times":[[0,0],[0,0],[0,0],[0,0],[0,0]],"slots_filled":0,"type_mismatch'
    b'es":{},"untracked_columns":0,"versions":{"counts":{"$nd":[0,"|u1",[0,0]]},"names":[]},"warmup":{"predict'
    b'ion":{"anchor":0,"buckets":{"$nd":[0,"<i4",[0]]},"categories":{},"counts":{"$nd":[0,"<u4",[0]]},"distinc'
    b't":{},"numbers":0,"other":0},"score":{"anchor":0,"buckets":{"$nd":[0,"<i4",[0]]},"categories":{},"counts'
    b'":{"$nd":[0,"<u4",[0]]},"distinct":{},"numbers":0,"other":0}},"warmup_rows":0},"performance":null,"perfo'
    b'rmance_report":{},"policy":{"alarms":{}},"predictions_total":0,"quality":{"$nd":[0,"<f8",[0,0]]},"qualit'
    b'y_stretches":[],"quarantined":null,"reference_times":null,"relearning":{},"retrain_budget":null,"schedul'
    b'e_from":null,"segments":null,"subwindow_marks":[],"task":null,"versions":{"counts":[[],[],[],[],[],[],[]'
    b'],"rows":0,"versions":{"names":[],"overflow":0,"since":[]}},"warmup_times":[0,0]}'
)

# The same, made from the state of snapshot format version 5 (a sketch's warm-up columns written together):
# 3.5 % fewer bytes than DICTIONARY_1 for a model of the benchmark's stream in its warm-up (3,969 -> 3,832).
DICTIONARY_2 = (
    b'{"arrays":0,"body":0,"checksum":"crc32:00000000","config":"0000000000000000","format":"streamdrift-snaps'
    b'hot","identity":{"cluster":"","group":"","topics":["",""]},"marker":"$nd","version":0}\n{"attribution_mea'
    b'ns":{"reference":{},"ring":[{},{},{},{},{}],"rows":0},"attributions":{"columns":{"edges":{"$nd":[0,"<f8"'
    b',[0]]},"layout":{"categories":[],"edge_counts":[],"kinds":[],"names":[]},"ref_counts":{"$nd":[0,"|u1",[0'
    b']]}},"last_scores":[],"ring":{"$nd":[0,"|u1",[0,0]]},"rows":0,"slot":0,"slot_offsets":[[0,0],[0,0],[0,0]'
    b',[0,0],[0,0]],"slot_rows":[0,0,0,0,0],"slot_times":[[0,0],[0,0],[0,0],[0,0],[0,0]],"slots_filled":0,"typ'
    b'e_mismatches":{},"untracked_columns":0,"versions":{"counts":{"$nd":[0,"|u1",[0,0]]},"names":[]},"warmup"'
    b':{"columns":{}},"warmup_rows":0},"cbpe":{"rows":0,"sums":[[0,0],[0,0],[0,0],[0,0],[0,0],[0,0],[0,0]]},"c'
    b'hange_from":[],"concept":{"design":null,"errors":0,"next_look":null,"reference":null,"runs":[0,0],"s":[0'
    b',0],"seen":0,"version":0,"watched":0,"watched_errors":0},"concept_from":null,"concept_versions":{},"degr'
    b'adation":{"degraded_windows":0,"learnt":null,"warmup_seen":0,"warmup_sum":0,"warmup_weight":0,"windows":'
    b'0},"drift_events":{},"errors_total":0,"features":{"columns":{"edges":{"$nd":[0,"<f8",[0]]},"layout":{"ca'
    b'tegories":[],"edge_counts":[],"kinds":[],"names":[]},"ref_counts":{"$nd":[0,"|u1",[0]]}},"last_scores":['
    b'],"ring":{"$nd":[0,"|u1",[0,0]]},"rows":0,"scores":{"last":{"$nd":[0,"<f8",[0]]},"last_change":null,"ref'
    b'erence":null,"ring":[0,0,0,0,0,0,0,0,0,0],"warmup":[0,0]},"slot":0,"slot_offsets":[[0,0],[0,0],[0,0],[0,'
    b'0],[0,0]],"slot_rows":[0,0,0,0,0],"slot_times":[[0,0],[0,0],[0,0],[0,0],[0,0]],"slots_filled":0,"type_mi'
    b'smatches":{},"untracked_columns":0,"versions":{"counts":{"$nd":[0,"|u1",[0,0]]},"names":[]},"warmup":{"c'
    b'olumns":{"age":{"anchor":0,"categories":{},"distinct":{},"numbers":0,"other":0},"credit_lines":{"anchor"'
    b':0,"categories":{},"distinct":{},"numbers":0,"other":0},"debt_ratio":{"anchor":0,"categories":{},"distin'
    b'ct":{},"numbers":0,"other":0},"employment":{"anchor":0,"categories":{"employed":0,"retired":0,"self_empl'
    b'oyed":0},"distinct":{},"numbers":0,"other":0},"has_mortgage":{"anchor":0,"categories":{"False":0,"True":'
    b'0},"distinct":{},"numbers":0,"other":0},"income":{"anchor":0,"categories":{},"distinct":{},"numbers":0,"'
    b'other":0},"region":{"anchor":0,"categories":{"east":0,"south":0,"west":0},"distinct":{},"numbers":0,"oth'
    b'er":0}},"scores":{"scored":null,"sums":{"$nd":[0,"<u4",[0]]}}},"warmup_rows":0},"feedback_total":0,"join'
    b'":{"carried":0,"feedback":{"bytes":0,"duplicates":0,"entries":[],"evicted":0,"evicted_bytes":0,"expired"'
    b':0,"newest":null},"joined":0,"predictions":{"bytes":0,"duplicates":0,"entries":[["credit-risk-0",0,0,0,0'
    b',0,"v1",null],["credit-risk-1",0,0,0,0,0,"v1",null],["credit-risk-2",0,0,0,0,0,"v1",null],["credit-risk-'
    b'3",0,0,0,0,0,"v1",null],["credit-risk-4",0,0,0,0,0,"v1",null],["credit-risk-5",0,0,0,0,0,"v1",null],["cr'
    b'edit-risk-6",0,0,0,0,0,"v1",null],["credit-risk-7",0,0,0,0,0,"v1",null],["credit-risk-8",0,0,0,0,0,"v1",'
    b'null],["credit-risk-9",0,0,0,0,0,"v1",null],["credit-risk-10",0,0,0,0,0,"v1",null],["credit-risk-11",0,0'
    b',0,0,0,"v1",null],["credit-risk-12",0,0,0,0,0,"v1",null],["credit-risk-13",0,0,0,0,0,"v1",null],["credit'
    b'-risk-14",0,0,0,0,0,"v1",null],["credit-risk-15",0,0,0,0,0,"v1",null],["credit-risk-16",0,0,0,0,0,"v1",n'
    b'ull],["credit-risk-17",0,0,0,0,0,"v1",null],["credit-risk-18",0,0,0,0,0,"v1",null],["credit-risk-19",0,0'
    b',0,0,0,"v1",null]],"evicted":0,"evicted_bytes":0,"expired":0,"newest":0},"recent":[],"watermark":0},"lab'
    b'elled_total":0,"labels":{"columns":{"edges":{"$nd":[0,"<f8",[0]]},"layout":{"categories":[],"edge_counts'
    b'":[],"kinds":[],"names":[]},"ref_counts":{"$nd":[0,"|u1",[0]]}},"last_scores":[],"ring":{"$nd":[0,"|u1",'
    b'[0,0]]},"rows":0,"slot":0,"slot_offsets":[[0,0],[0,0],[0,0],[0,0],[0,0]],"slot_rows":[0,0,0,0,0],"slot_t'
    b'imes":[[0,0],[0,0],[0,0],[0,0],[0,0]],"slots_filled":0,"type_mismatches":{},"untracked_columns":0,"versi'
    b'ons":{"counts":{"$nd":[0,"|u1",[0,0]]},"names":[]},"warmup":{"columns":{}},"warmup_rows":0},"last_drift"'
    b':null,"last_event_time":0,"last_version":"v1","multivariate":null,"outputs":{"columns":{"edges":{"$nd":['
    b'0,"<f8",[0]]},"layout":{"categories":[],"edge_counts":[],"kinds":[],"names":[]},"ref_counts":{"$nd":[0,"'
    b'|u1",[0]]}},"last_scores":[],"ring":{"$nd":[0,"|u1",[0,0]]},"rows":0,"slot":0,"slot_offsets":[[0,0],[0,0'
    b'],[0,0],[0,0],[0,0]],"slot_rows":[0,0,0,0,0],"slot_times":[[0,0],[0,0],[0,0],[0,0],[0,0]],"slots_filled"'
    b':0,"type_mismatches":{},"untracked_columns":0,"versions":{"counts":{"$nd":[0,"|u1",[0,0]]},"names":[]},"'
    b'warmup":{"columns":{"prediction":{"anchor":0,"categories":{},"distinct":{},"numbers":0,"other":0},"score'
    b'":{"anchor":0,"categories":{},"distinct":{},"numbers":0,"other":0}}},"warmup_rows":0},"outputs_version":'
    b'null,"performance":null,"performance_report":{},"policy":{"alarms":{},"changes":{}},"predictions_total":'
    b'0,"quality":{"$nd":[0,"<f8",[0,0]]},"quality_stretches":[],"quarantined":null,"reference_times":null,"re'
    b'learning":{},"retrain_budget":null,"schedule_from":null,"segments":null,"subwindow_marks":[],"task":null'
    b',"versions":{"counts":[[],[],[],[],[],[],[]],"rows":0,"versions":{"names":[],"overflow":0,"since":[]}},"'
    b'versions_graded":[],"versions_served":["v1"],"warmup_times":[0,0]}'
)

DICTIONARIES = {zlib.adler32(d): d for d in (DICTIONARY_1, DICTIONARY_2)}  # dictionary id -> dictionary
CURRENT = DICTIONARY_2  # what values are compressed with
