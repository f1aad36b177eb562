"""The gRPC messages and stubs of neuropil.v1, generated from proto/ when the
package is built (cluster_pb2, cluster_pb2_grpc, experiment_pb2, hardware_pb2, ...)."""
