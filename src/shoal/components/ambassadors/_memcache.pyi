"""Type stubs of the compiled memcached parser: ``memcache.py`` compiled a second time."""

from shoal.components.ambassadors.memcache import (
    BadRequest as BadRequest,
)
from shoal.components.ambassadors.memcache import (
    Request as Request,
)
from shoal.components.ambassadors.memcache import (
    RequestParser as RequestParser,
)
from shoal.components.ambassadors.memcache import (
    ResponseError as ResponseError,
)
from shoal.components.ambassadors.memcache import (
    response_end as response_end,
)
from shoal.components.ambassadors.memcache import (
    value_blocks as value_blocks,
)
