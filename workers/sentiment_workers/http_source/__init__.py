"""The HTTP source: poll a paged API, land every page raw, then publish its records to the pipeline's topic.

``settings`` is the configuration contract shared with the operator (it imports only that module);
``client`` fetches pages, ``landing``/``state`` make them durable, ``poller`` runs the loop.
"""
