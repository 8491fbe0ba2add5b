"""Importers that turn OMOP CDM and FHIR R4 sources into a contract extract."""
