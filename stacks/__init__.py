"""One module per CloudFormation layer; build_all() renders every template, with no I/O.

Order matters: a layer may use only the Outputs of layers before it (root wires them).
"""

from __future__ import annotations

from troposphere import Template

from stacks.base import Layer
from stacks.cluster import ClusterLayer
from stacks.config import ConfigLayer
from stacks.endpoints import EndpointsLayer
from stacks.load_balancer import LoadBalancerLayer
from stacks.monitoring import MonitoringLayer
from stacks.network import NetworkLayer
from stacks.registry import RegistryLayer
from stacks.root import RootBuilder
from stacks.security import SecurityLayer
from stacks.service import ServiceLayer
from stacks.settings import GenerationSettings

NESTED_LAYERS: tuple[type[Layer], ...] = (
    ConfigLayer,
    NetworkLayer,
    SecurityLayer,
    EndpointsLayer,
    LoadBalancerLayer,
    ClusterLayer,
    ServiceLayer,
    MonitoringLayer,
)
ROOT_FILE = "root.json"


def build_all(settings: GenerationSettings) -> dict[str, Template]:
    """File name -> template, for root.json, every nested layer and the standalone registry."""
    registry_layer = RegistryLayer(settings)
    registry = registry_layer.build()
    built = [(layer, layer.build()) for layer in (cls(settings) for cls in NESTED_LAYERS)]
    templates = {layer.file_name: template for layer, template in built}
    templates[registry_layer.file_name] = registry
    templates[ROOT_FILE] = RootBuilder(built, registry=registry).build()
    return templates
