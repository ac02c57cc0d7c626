"""Trainers: VirtualModel and ShoeModel (WD / LpS / SW modules), streaming the shards.

Not built yet: no trainer ships in this version. The data they consume is the sample contract in
``hoiforge.datasets.contract``; long captions are encoded by ``hoiforge.models.text_encoding``.
"""
