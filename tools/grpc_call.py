#!/usr/bin/env python3
"""A grpcurl-style client that knows nothing but what server reflection tells it.

    tools/grpc_call.py ADDR list                       services the server offers
    tools/grpc_call.py ADDR describe SERVICE           methods of a service
    tools/grpc_call.py ADDR call SERVICE/METHOD JSON   call a unary method, JSON in, JSON out

Example:
    tools/grpc_call.py 127.0.0.1:50051 call tandem.crm.v1.CrmService/CreateCustomer \
        '{"customer": {"display_name": "Ada", "email": "ada@example.com"}}'

TLS and tokens come from the environment `make run` prints: TANDEM_CA_FILE (the CA that
signed the server's certificate; unset: plaintext), TANDEM_TOKEN (a bearer token, e.g.
`target/debug/tandemctl token --role sales`).

Errors print the gRPC status, its message and any google.rpc.BadRequest field violations,
and exit with status 1.
"""
import json
import os
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def reflect(channel, **request):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)]))
    for response in responses:
        if response.HasField("error_response"):
            raise SystemExit(f"reflection: {response.error_response.error_message}")
        return response


def load_pool(channel, symbol):
    """Fetches the file defining `symbol` and its dependencies into a descriptor pool."""
    pool = descriptor_pool.DescriptorPool()
    files = {}
    pending = [("symbol", symbol)]
    while pending:
        kind, name = pending.pop()
        if kind == "symbol":
            response = reflect(channel, file_containing_symbol=name)
        else:
            response = reflect(channel, file_by_filename=name)
        for raw in response.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            if proto.name not in files:
                files[proto.name] = proto
                pending.extend(("file", dep) for dep in proto.dependency if dep not in files)
    added = set()
    while len(added) < len(files):
        for name, proto in files.items():
            if name not in added and all(dep in added for dep in proto.dependency):
                pool.Add(proto)
                added.add(name)
    return pool


def bad_request_details(error):
    """Field violations from the grpc-status-details-bin trailer, if any."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        pool = descriptor_pool.DescriptorPool()
        status = descriptor_pb2.FileDescriptorProto(name="status.proto", package="google.rpc", syntax="proto3")
        msg = status.message_type.add(name="Status")
        msg.field.add(name="code", number=1, type=5, label=1)
        msg.field.add(name="message", number=2, type=9, label=1)
        msg.field.add(name="details", number=3, type=11, label=3, type_name=".google.rpc.Any")
        anyp = status.message_type.add(name="Any")
        anyp.field.add(name="type_url", number=1, type=9, label=1)
        anyp.field.add(name="value", number=2, type=12, label=1)
        br = status.message_type.add(name="BadRequest")
        fv = br.nested_type.add(name="FieldViolation")
        fv.field.add(name="field", number=1, type=9, label=1)
        fv.field.add(name="description", number=2, type=9, label=1)
        br.field.add(name="field_violations", number=1, type=11, label=3, type_name=".google.rpc.BadRequest.FieldViolation")
        pool.Add(status)
        Status = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))
        BadRequest = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.BadRequest"))
        parsed = Status.FromString(value)
        for detail in parsed.details:
            if detail.type_url.endswith("google.rpc.BadRequest"):
                for violation in BadRequest.FromString(detail.value).field_violations:
                    yield violation.field, violation.description


def open_channel(addr):
    """TLS when TANDEM_CA_FILE names the CA (as `make run` prints), plaintext otherwise;
    TANDEM_TLS_NAME is the name the server's certificate must carry (default localhost)."""
    ca_file = os.environ.get("TANDEM_CA_FILE", "")
    if not ca_file:
        return grpc.insecure_channel(addr)
    with open(ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    name = os.environ.get("TANDEM_TLS_NAME", "localhost")
    return grpc.secure_channel(addr, credentials, options=[("grpc.ssl_target_name_override", name)])


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    addr, verb = argv[1], argv[2]
    channel = open_channel(addr)
    if verb == "list":
        response = reflect(channel, list_services="")
        for service in response.list_services_response.service:
            print(service.name)
        return 0
    if verb == "describe":
        service = load_pool(channel, argv[3]).FindServiceByName(argv[3])
        for method in service.methods:
            print(f"rpc {method.name}({method.input_type.full_name}) returns ({method.output_type.full_name})")
        return 0
    if verb == "call":
        service_name, method_name = argv[3].rsplit("/", 1)
        method = load_pool(channel, service_name).FindServiceByName(service_name).methods_by_name[method_name]
        Input = message_factory.GetMessageClass(method.input_type)
        Output = message_factory.GetMessageClass(method.output_type)
        request = json_format.Parse(argv[4] if len(argv) > 4 else "{}", Input())
        call = channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=Input.SerializeToString,
            response_deserializer=Output.FromString,
        )
        token = os.environ.get("TANDEM_TOKEN", "")
        metadata = [("authorization", f"Bearer {token}")] if token else None
        try:
            response = call(request, timeout=10, metadata=metadata)
        except grpc.RpcError as error:
            print(f"ERROR: {error.code().name}: {error.details()}", file=sys.stderr)
            for field, description in bad_request_details(error):
                print(f"  field {field}: {description}", file=sys.stderr)
            return 1
        print(json.dumps(json_format.MessageToDict(response, preserving_proto_field_name=True), indent=2))
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
