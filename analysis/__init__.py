"""DuckDB over the experiment store: views and macros in analysis/sql/, opened by analysis.catalog.

    from analysis.catalog import query
    query(root, "select * from maj_at_k($k) order by run_id, step", {"k": 16})
"""
