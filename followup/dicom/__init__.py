"""Photos as DICOM files: the builder, the export and the push to an image archive (DICOMweb)."""
