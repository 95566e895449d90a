"""Latency datasets in and out of the store: HELP, LatBench, HW-NAS-Bench and CSV imports; CSV and LatBench exports.

One module per job: ``hardware`` (the device catalogue), ``rows`` (what importers share), ``help`` / ``latbench`` /
``hwnasbench`` / ``csvrows`` (one importer each), ``writers`` (a device's rows as CSV or a LatBench pickle),
``store`` (import or export against the database named by Settings; the CLI's ``latfarm import`` / ``export data``
wrap it). This package re-exports their public names.
"""

from latfarm.services.datasets.csvrows import CSV, import_csv
from latfarm.services.datasets.formats import EXPORT_FORMATS, FORMATS, export_from_store, import_into_store
from latfarm.services.datasets.hardware import HARDWARE, describe_device
from latfarm.services.datasets.help import HELP, import_help
from latfarm.services.datasets.hwnasbench import HWNASBENCH, import_hwnasbench
from latfarm.services.datasets.latbench import LATBENCH, import_latbench
from latfarm.services.datasets.rows import DatasetError, Imported, ensure_device
from latfarm.services.datasets.writers import ROW_FIELDS, device_rows, export_file, to_csv, to_latbench

__all__ = [
    "CSV",
    "EXPORT_FORMATS",
    "FORMATS",
    "HARDWARE",
    "HELP",
    "HWNASBENCH",
    "Imported",
    "LATBENCH",
    "ROW_FIELDS",
    "DatasetError",
    "describe_device",
    "device_rows",
    "export_file",
    "ensure_device",
    "export_from_store",
    "import_csv",
    "import_help",
    "import_hwnasbench",
    "import_into_store",
    "import_latbench",
    "to_csv",
    "to_latbench",
]
