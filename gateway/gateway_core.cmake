# The gateway's own code: broker, AgentService, the relay (Postgres endpoint, caller connections and
# their session streams), the identity provider's event endpoint, and the binary.
add_library(pgward_gateway_core STATIC
  broker/agent_registry.cc broker/agent_service.cc broker/audit_writer.cc broker/control_stream.cc
  broker/event_bounds.cc broker/session_admission.cc
  broker/session_broker.cc
  events/events_listener.cc events/http_request.cc events/security_event.cc events/security_event_receiver.cc
  relay/frontend_connection.cc relay/pg_listener.cc relay/session_stream.cc)
pgward_target_defaults(pgward_gateway_core)
target_link_libraries(pgward_gateway_core PUBLIC pgward_proto pgward_store pgward_admin pgward_identity
  pgward_pgwire pgward_crypto pgward_net pgward_util absl::flat_hash_map absl::synchronization)

add_executable(pgward-gateway main.cc)
pgward_target_defaults(pgward-gateway)
target_compile_definitions(pgward-gateway PRIVATE PGWARD_VERSION="${PROJECT_VERSION}")
target_link_libraries(pgward-gateway PRIVATE pgward_gateway_core absl::flags absl::flags_parse)
