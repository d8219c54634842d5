"""ys1000_dev: development only — the local sandbox (``sandbox``), real Airflow processes for tests
and the demo (``processes``), loopback ports (``ports``), the demo (``python -m ys1000_dev.demo``)
and the ``ys1000-dev`` command (``ys1000-dev sandbox up|down|status|env``). Installed by
``make setup``; the product (``ys1000``) never imports it."""
