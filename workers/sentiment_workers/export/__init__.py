"""The curated export: the ``dw_messages`` fact table as a Delta Lake table (delta-rs), incremental.

Needs the ``batch`` extra (deltalake, pyarrow, fsspec, ftfy). See docs/export.md.
"""
