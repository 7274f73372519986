"""The gateway's request pipeline: small stages run in one declared order."""

from shardgate.pipeline.base import Handler, Pipeline, Stage
from shardgate.pipeline.context import RequestContext

__all__ = ["Handler", "Pipeline", "RequestContext", "Stage"]
