"""Delta tables: the only package that imports deltalake.

Tables are named in documents by short relative names; ``tables.table_uri`` places them under
the environment's data root. The jobs (batch inference, the monitor) and the model server's
inference log read and write through here.
"""
