# The agent's own code: control stream, sessions, upstream login, and the binary.
add_library(pgward_agent_core STATIC
  control/agent_token.cc control/control_client.cc control/event_bounds.cc control/event_queue.cc control/event_spool.cc control/session_manager.cc
  session/agent_session.cc session/statement_gate.cc session/statement_policy.cc
  upstream/credential_resolver.cc upstream/pinned_settings.cc upstream/tls_contexts.cc
  upstream/upstream_login.cc upstream/upstream_policy.cc upstream/upstream_pool.cc)
pgward_target_defaults(pgward_agent_core)
target_link_libraries(pgward_agent_core PUBLIC pgward_proto pgward_inspect pgward_pgwire pgward_crypto
  pgward_net pgward_util absl::flat_hash_map absl::flat_hash_set absl::synchronization ZLIB::ZLIB)

add_executable(pgward-agent main.cc)
pgward_target_defaults(pgward-agent)
target_compile_definitions(pgward-agent PRIVATE PGWARD_VERSION="${PROJECT_VERSION}")
target_link_libraries(pgward-agent PRIVATE pgward_agent_core absl::flags absl::flags_parse)
