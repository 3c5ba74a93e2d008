"""What reads and writes the disk safely: bounded reads, atomic writes, locks, digests, records
and the cache (no torch).
"""
