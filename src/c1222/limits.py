"""Size and count limits, checked before anything is allocated (architecture rule 3)."""

from __future__ import annotations

from typing import Final

#: Largest APDU we accept or build (MSDK's configurable ceiling is 16 MiB).
MAX_APDU_SIZE: Final = 16 * 1024 * 1024
#: Default largest APDU a node offers to receive (MSDK's default 0x7FFF).
DEFAULT_MAX_APDU_SIZE: Final = 0x7FFF
#: Bytes of BER length field after the 0x8n byte (up to 2**32 - 1).
MAX_LENGTH_OCTETS: Final = 4
#: Arcs in one object identifier, and bytes in one arc.
MAX_OID_ARCS: Final = 64
MAX_OID_ARC_BYTES: Final = 5  # 5 x 7 bits: arcs up to 2**35 - 1
#: Services in one EPSEM.
MAX_SERVICES: Final = 256
#: Bytes in an invocation id (A4, A8): they are at most 4 bytes (digest 12).
MAX_INVOCATION_ID_BYTES: Final = 4
#: Table-data continuation chunks (count 0xFFFF) in one service.
MAX_TABLE_DATA_CHUNKS: Final = 256
#: Features in one Identify response.
MAX_IDENTIFY_FEATURES: Final = 32
#: Relays listed in one Trace response.
MAX_TRACE_HOPS: Final = 64
#: Largest HTTP request body the web apps read (transport.http; the API's bodies are small).
MAX_HTTP_BODY_SIZE: Final = 1024 * 1024
#: Table elements that occupy no bytes (a TIME under TM_FORMAT 0, a record of absent members)
#: in one table decode: their count comes from the dimension tables alone, so without a cap
#: 13 bytes of Tables 0 and 61 would ask for 65535 x 65535 empty intervals.
MAX_EMPTY_ELEMENTS: Final = 16384
