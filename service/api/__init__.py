"""Protocol doors, one blueprint each: each reads its wire format with its codec (service/codecs/)
and hands the request to the one data plane (service/core/dataplane.py)."""
