"""Costs: segment counting, price tables, actual-cost capture, comparison reports."""

from gateway.costs.segments import Encoding, SegmentCount, count_segments, split_segments

__all__ = ["Encoding", "SegmentCount", "count_segments", "split_segments"]
