"""Add PREFIXMEMORY to PEFT's closed ``PeftType`` enum.

peft 0.18 registers a method only if its name is already an enum member (``register_peft_method``) and
saves a state dict only for members (``get_peft_model_state_dict``). Python enums cannot be extended through
their public API, so the member is added the way ``EnumType.__new__`` stores members. Guarded: it runs once,
checks the result, and fails with a clear error if a future Python or PEFT changes the enum's internals.
"""

from peft.utils.peft_types import PeftType

MEMBER_NAME = "PREFIXMEMORY"


def extend_peft_type() -> PeftType:
    """Return ``PeftType.PREFIXMEMORY``, adding it to the enum on first call (idempotent)."""
    if MEMBER_NAME in PeftType.__members__:
        return PeftType[MEMBER_NAME]
    member = str.__new__(PeftType, MEMBER_NAME)
    member._name_ = MEMBER_NAME
    member._value_ = MEMBER_NAME
    member.__objclass__ = PeftType
    PeftType._member_map_[MEMBER_NAME] = member
    PeftType._value2member_map_[MEMBER_NAME] = member
    PeftType._member_names_.append(MEMBER_NAME)
    type.__setattr__(PeftType, MEMBER_NAME, member)
    if PeftType(MEMBER_NAME) is not member or member not in list(PeftType):
        raise RuntimeError("Could not add PREFIXMEMORY to peft's PeftType enum; this Python/peft is unsupported.")
    return member
