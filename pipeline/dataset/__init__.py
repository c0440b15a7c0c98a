"""The output contract: every name in the folder (layout), its typed records (records), one reader (read).

pyarrow, pydantic and fsspec only: no Ray, no torch, so the loader, the report and the
CLI's read-only commands use it anywhere.
"""
