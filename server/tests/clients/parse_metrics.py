"""Reads Prometheus text exposition on stdin with prometheus_client's parser
and prints one JSON object per sample: {"name", "labels", "value"}. The
metrics tests parse weir's /metrics with it (a real parser, not ours)."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value}))
