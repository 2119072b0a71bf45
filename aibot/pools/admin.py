"""The admin role: the overflow and backup pool.

When a role's pool is full or its keys are down, the router may send the job
here. Admin runs it with the same role code (chat, image or video), but with
the admin pool's own keys, clients and limits.
"""

from __future__ import annotations

from aibot.jobs import BadRequest, Job, Reply, Result
from aibot.pools import PoolContext, chat, image, video
from aibot.pools.base import Work

__all__ = ["build_work"]


def build_work(ctx: PoolContext) -> Work:
    """The admin work function: each job goes to its command's role."""
    roles: dict[str, Work] = {
        "chat": chat.build_work(ctx),
        "image": image.build_work(ctx),
        "video": video.build_work(ctx),
    }

    async def work(job: Job, reply: Reply) -> Result:
        run = roles.get(job.command)
        if run is None:
            raise BadRequest(f"the admin pool does not run {job.command!r} jobs")
        return await run(job, reply)

    return work
