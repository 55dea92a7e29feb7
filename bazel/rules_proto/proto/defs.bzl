"""Offline stand-in for @rules_proto//proto:defs.bzl: forwards to Bazel 4's native rule."""

proto_library = native.proto_library
