"""A store and a remote, kept in step: ``push.py``, ``pull.py`` and live shipping
(``shipper.py``), over the key layout of ``keys.py``. Import these names from
``agtrace.eventlog``."""
