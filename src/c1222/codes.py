"""Code values from ANSI C12.22 / C12.19 (docs/spec digest sections 3, 4 and 7)."""

from __future__ import annotations

from enum import IntEnum, IntFlag


class ResponseCode(IntEnum):
    """EPSEM response (status) codes, 0x00-0x12 (C12.22 digest 4.4)."""

    OK = 0x00  #: accepted; service data follows
    ERR = 0x01  #: Error
    SNS = 0x02  #: Service Not Supported
    ISC = 0x03  #: Insufficient Security Clearance
    ONP = 0x04  #: Operation Not Possible
    IAR = 0x05  #: Inappropriate Action Requested
    BSY = 0x06  #: Device Busy
    DNR = 0x07  #: Data Not Ready
    DLK = 0x08  #: Data Locked
    RNO = 0x09  #: Renegotiate Request
    ISSS = 0x0A  #: Invalid Service Sequence State
    SME = 0x0B  #: Security Mechanism Error
    UAT = 0x0C  #: Unknown Application Title
    NETT = 0x0D  #: Network Time-out
    NETR = 0x0E  #: Network Not Reachable
    RQTL = 0x0F  #: Request Too Large (+ 4-byte maximum request size)
    RSTL = 0x10  #: Response Too Large (+ 4-byte maximum response size)
    SGNP = 0x11  #: Segmentation Not Possible
    SGERR = 0x12  #: Segmentation Error


class ServiceCode(IntEnum):
    """EPSEM request codes (C12.22 digest 4.1). 0x31-0x39 and 0x41-0x49 are ranges."""

    IDENTIFY = 0x20
    TERMINATE = 0x21
    DISCONNECT = 0x22
    DEREGISTER = 0x24
    RESOLVE = 0x25
    TRACE = 0x26
    REGISTER = 0x27
    FULL_READ = 0x30
    PARTIAL_READ_INDEX = 0x31  # 0x31..0x39: 1..9 indices
    DEFAULT_READ = 0x3E
    PARTIAL_READ_OFFSET = 0x3F
    FULL_WRITE = 0x40
    PARTIAL_WRITE_INDEX = 0x41  # 0x41..0x49: 1..9 indices
    DEFAULT_WRITE = 0x4E
    PARTIAL_WRITE_OFFSET = 0x4F
    LOGON = 0x50
    SECURITY = 0x51
    LOGOFF = 0x52
    WAIT = 0x70


class SecurityMode(IntEnum):
    """EPSEM control bits 3-2."""

    CLEARTEXT = 0
    CLEARTEXT_AUTHENTICATED = 1
    CIPHERTEXT_AUTHENTICATED = 2


class ResponseControl(IntEnum):
    """EPSEM control bits 1-0."""

    ALWAYS = 0
    ON_EXCEPTION = 1
    NEVER = 2


class NodeType(IntFlag):
    """Register node-type bits (C12.22 digest 7.1)."""

    RELAY = 0x01
    MASTER_RELAY = 0x02
    HOST = 0x04
    NOTIFICATION_HOST = 0x08
    AUTHENTICATION_HOST = 0x10
    END_DEVICE = 0x20
    RESERVED = 0x40
    DOMAIN_PATTERN = 0x80  # a <my-domain-pattern> follows the registration period


class IdentifyFeature(IntEnum):
    """Identify response feature tags (C12.22 digest 4.2)."""

    END = 0x00
    SECURITY_MECHANISM = 0x04
    SESSION_CTRL = 0x05
    DEVICE_CLASS = 0x06
    DEVICE_IDENTITY = 0x07


class IdentifyStandard(IntEnum):
    """The <std> byte of an Identify response."""

    C1218 = 0x00
    RESERVED = 0x01
    C1221 = 0x02
    C1222 = 0x03


class AeQualifier(IntFlag):
    """Calling-AE-qualifier (A7) flag bits."""

    TEST = 0x01
    URGENT = 0x02
    NOTIFICATION = 0x04


#: C12.22 application context 2.16.124.113620.1.22 (the default ASO context).
C1222_CONTEXT = (2, 16, 124, 113620, 1, 22)
#: Base under which relative AP titles are expanded: <application-context>.0
AP_TITLE_BASE = (2, 16, 124, 113620, 1, 22, 0)
#: The EAX'/AES-128 security mechanism 2.16.124.113620.1.22.2.1.
EAX_PRIME_MECHANISM = (2, 16, 124, 113620, 1, 22, 2, 1)
#: IANA port for C12.22 over TCP and UDP.
C1222_PORT = 1153
