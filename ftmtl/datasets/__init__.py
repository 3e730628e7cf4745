"""Datasets in formats other than INbreast's (COCO instance JSON, a CSV of boxes or mask paths),
read into the same Dataset API as ``INbreastDataset``, and what the readers share.

Import from the modules (``ftmtl.datasets.coco_format``, ``csv_format``, ``loader``): this
package imports nothing itself, since the INbreast reader uses its cache and reporting modules
and would otherwise import itself in a circle.
"""
