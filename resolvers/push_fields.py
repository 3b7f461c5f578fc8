"""registerPushDevice and unregisterPushDevice."""

from __future__ import annotations

from models.push import PushPlatform
from resolvers.access import current_session_id, require_viewer
from schema.context import Info
from schema.types import PushDevice


async def register_push_device(info: Info, platform: PushPlatform, token: str) -> PushDevice:
    viewer = await require_viewer(info)
    device = await info.context.services.devices.register(
        viewer, platform, token, current_session_id(info)
    )
    return PushDevice.from_doc(device)


async def unregister_push_device(info: Info, token: str) -> bool:
    viewer = await require_viewer(info)
    return await info.context.services.devices.unregister(viewer, token)
