"""Wire formats: msgspec structs for the events that come in and the ASFF findings that go out. No I/O."""
