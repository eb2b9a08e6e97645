"""Type stubs of the compiled RESP2 scanners (same contracts as the pure ones in ``resp``)."""

from shoal.components.ambassadors.resp import BadRequest, Command

def scan_commands(
    buf: bytes, pos: int, out: list[Command | BadRequest], max_args: int, max_bulk: int
) -> int: ...
def split_replies(buf: bytes, pos: int, limit: int, out: list[bytes]) -> int: ...
