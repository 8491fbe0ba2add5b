"""The referral workflow without HTTP: the store and its state machine, the FHIR ServiceRequest,
the visits exported as contract rows, and the report."""
