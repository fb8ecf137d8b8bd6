"""The rules of the spec: no HTTP and no SQL here."""
