"""GS1 EPCIS 2.0 edge adapter: schema validation, CBV 2.0 event hash IDs, mapping to
supply-chain transactions (see ``carechain.contracts.supply``)."""
