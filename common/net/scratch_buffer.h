// A per-thread buffer for socket reads whose bytes are consumed before the next suspension.
#pragma once

#include <asio.hpp>

#include <cstddef>
#include <memory>

namespace pgward::net {

// A relay session spends most of its life waiting; a read buffer of its own would be idle
// memory times the number of sessions (tens of KiB each, a third of a session's footprint with
// 1,000 sessions). Reads whose bytes are parsed or copied at once use this instead: valid on
// the calling thread until its next use there, so never across a co_await.
inline asio::mutable_buffer ScratchBuffer() {
  constexpr size_t kBytes = 64 * 1024;
  thread_local std::unique_ptr<char[]> buffer(new char[kBytes]);
  return asio::buffer(buffer.get(), kBytes);
}

}  // namespace pgward::net
