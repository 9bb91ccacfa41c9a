"""Retrain mode of build-dataset: reviewed production documents plus replay, sampled by need.

``labels`` turns verdicts into label columns, ``columns`` holds the Arrow/numpy column helpers and
IOB2 tags, ``sampling`` the hash draws and the plan, ``join`` reads the previous dataset and joins
labels with documents, ``write`` writes the splits and the manifest, ``build`` runs it all.
"""
