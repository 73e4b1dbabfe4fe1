"""The laser.v1 wire contract: generated messages (`pb`) and service stubs (`rpc`)."""

from laser_serve.api.laser.v1 import laser_pb2 as pb
from laser_serve.api.laser.v1 import laser_pb2_grpc as rpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Laser"].full_name  # "laser.v1.Laser"

__all__ = ["SERVICE_NAME", "pb", "rpc"]
