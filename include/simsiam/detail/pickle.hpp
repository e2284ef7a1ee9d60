// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Internal: reads what Python's `torch.save` writes (the zip archive of PyTorch >= 1.6:
/// a protocol-2 pickle in `data.pkl`, tensor storages in `data/<key>`), or `torch::pickle_save`,
/// into IValues: dicts, lists, tuples, strings, numbers and tensors.
///
/// LibTorch's own `torch::pickle_load` stops at opcodes that Python emits for ordinary
/// checkpoints (SETITEM for a one-entry dict, BUILD for an OrderedDict's `_metadata`), so the
/// official SimSiam checkpoints need this reader. Objects other than OrderedDict, tensors and
/// parameters are refused by name.
#pragma once

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace simsiam::detail {

/// The dtype of a storage class written by torch.save ("torch.FloatStorage", ...).
inline torch::ScalarType storage_dtype(const std::string& name, const std::string& path) {
  static const std::map<std::string, torch::ScalarType> kTypes{
      {"torch.FloatStorage", torch::kFloat}, {"torch.DoubleStorage", torch::kDouble},
      {"torch.HalfStorage", torch::kHalf},   {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.LongStorage", torch::kLong},   {"torch.IntStorage", torch::kInt},
      {"torch.ShortStorage", torch::kShort}, {"torch.CharStorage", torch::kChar},
      {"torch.ByteStorage", torch::kByte},   {"torch.BoolStorage", torch::kBool}};
  const auto it = kTypes.find(name);
  TORCH_CHECK(it != kTypes.end(), "simsiam: '", path, "' holds a tensor storage of type ", name,
              ", which this reader does not know");
  return it->second;
}

/// Reads `path`, written by Python's torch.save, into an IValue.
class TorchSaveReader {
 public:
  explicit TorchSaveReader(std::string path) : path_(std::move(path)) {}

  c10::IValue read() {
    TORCH_CHECK(std::filesystem::is_regular_file(path_), "simsiam: cannot read '", path_,
                "': no such file");
    try {
      reader_ = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path_);
    } catch (const c10::Error& e) {
      TORCH_CHECK(false, "simsiam: '", path_,
                  "' is not a torch.save zip archive (PyTorch >= 1.6 writes one; re-save older "
                  "checkpoints with a recent torch.save): ",
                  e.what_without_backtrace());
    }
    TORCH_CHECK(reader_->hasRecord("data.pkl"), "simsiam: '", path_,
                "' is a zip archive without data.pkl: not written by torch.save");
    if (reader_->hasRecord("byteorder")) {  // PyTorch >= 2.1 records it
      auto [order, length] = reader_->getRecord("byteorder");
      const std::string text(static_cast<const char*>(order.get()), length);
      TORCH_CHECK(text == "little", "simsiam: '", path_, "' was written on a ", text,
                  "-endian machine; only little-endian files are read");
    }
    auto [data, size] = reader_->getRecord("data.pkl");
    bytes_ = static_cast<const uint8_t*>(data.get());
    size_ = size;
    position_ = 0;
    const auto value = run();
    bytes_ = nullptr;
    return value;
  }

 private:
  using Op = uint8_t;

  [[noreturn]] void fail(const std::string& what) const {
    TORCH_CHECK(false, "simsiam: cannot read '", path_, "' at byte ", position_,
                " of its pickle: ", what);
    std::abort();
  }
  const uint8_t* take(size_t n) {
    if (position_ + n > size_) fail("truncated");
    const uint8_t* p = bytes_ + position_;
    position_ += n;
    return p;
  }
  template <class T>
  T little() {
    T value;
    std::memcpy(&value, take(sizeof(T)), sizeof(T));
    return value;
  }
  std::string line() {
    std::string text;
    while (true) {
      const char c = static_cast<char>(*take(1));
      if (c == '\n') return text;
      text += c;
    }
  }
  c10::IValue& top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      fail("stack underflow");
    }
    return stack_.back();
  }
  c10::IValue pop() {
    top();  // checks
    auto value = std::move(stack_.back());
    stack_.pop_back();
    return value;
  }
  std::vector<c10::IValue> pop_to_mark() {
    if (marks_.empty()) fail("no MARK");
    const size_t mark = marks_.back();
    marks_.pop_back();
    if (mark > stack_.size()) fail("MARK above the stack");
    std::vector<c10::IValue> items(std::make_move_iterator(stack_.begin() + mark),
                                   std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }
  // A GLOBAL ("module.name") waits on the stack as a string no pickled text starts with.
  static constexpr const char* kGlobalTag = "\x01global:";
  static bool is_global(const c10::IValue& value) {
    return value.isString() && value.toStringRef().rfind(kGlobalTag, 0) == 0;
  }
  static std::string global_name(const c10::IValue& value) {
    return value.toStringRef().substr(std::strlen(kGlobalTag));
  }
  static c10::impl::GenericDict new_dict() {
    return c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get());
  }
  void set_items(std::vector<c10::IValue> items) {
    if (stack_.empty() || !stack_.back().isGenericDict()) fail("SETITEMS on a non-dict");
    if (items.size() % 2 != 0) fail("SETITEMS with an odd number of items");
    auto dict = stack_.back().toGenericDict();
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
      dict.insert_or_assign(std::move(items[i]), std::move(items[i + 1]));
    }
  }
  void append(std::vector<c10::IValue> items) {
    if (stack_.empty() || !stack_.back().isList()) fail("APPENDS on a non-list");
    auto list = stack_.back().toList();
    for (auto& item : items) list.push_back(std::move(item));
  }

  /// persistent_load of torch.save: ('storage', storage type, key, location, numel).
  c10::IValue load_storage(const c10::IValue& id) {
    if (!id.isTuple()) fail("a persistent id that is not a tuple");
    const auto items = id.toTupleRef().elements().vec();  // a vector: no inline-storage indexing
    if (items.size() < 5 || !items[0].isString() || items[0].toStringRef() != "storage") {
      fail("a persistent id that is not a storage");
    }
    const auto key = items[2].toStringRef();
    if (const auto it = storages_.find(key); it != storages_.end()) return it->second;
    if (!is_global(items[1])) fail("a storage without a type");
    const auto dtype = storage_dtype(global_name(items[1]), path_);
    const int64_t numel = items[4].toInt();
    const std::string record = "data/" + key;
    if (!reader_->hasRecord(record)) fail("missing record " + record);
    auto [data, size] = reader_->getRecord(record);
    const auto bytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
    if (size < bytes)
      fail("record " + record + " is shorter than its " + std::to_string(numel) + " elements");
    auto tensor = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
    std::memcpy(tensor.data_ptr(), data.get(), bytes);
    storages_.emplace(key, tensor);
    return tensor;
  }

  /// REDUCE: the callables torch.save's checkpoints use.
  c10::IValue call(const std::string& name, const std::vector<c10::IValue>& args) {
    if (name == "collections.OrderedDict") return new_dict();
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (args.size() < 4 || !args[0].isTensor()) fail("bad arguments to " + name);
      const auto& storage = args[0].toTensor();
      const auto sizes = tuple_ints(args[2]);
      const auto strides = tuple_ints(args[3]);
      return storage.as_strided(sizes, strides, args[1].toInt());
    }
    // What torch::pickle_save (C++) adds: type tags and typed lists around plain values.
    if (name.rfind("torch.jit._pickle.", 0) == 0) {
      if (args.empty()) fail("no arguments to " + name);
      return args[0];
    }
    if (name == "torch._utils._rebuild_parameter" ||
        name == "torch._utils._rebuild_parameter_with_state") {
      if (args.empty() || !args[0].isTensor()) fail("bad arguments to " + name);
      return args[0];
    }
    fail("it calls " + name + ", which this reader does not rebuild");
  }
  std::vector<int64_t> tuple_ints(const c10::IValue& value) {
    if (!value.isTuple()) fail("expected a tuple of sizes");
    std::vector<int64_t> ints;
    for (const auto& item : value.toTupleRef().elements()) ints.push_back(item.toInt());
    return ints;
  }

  /// The pickle machine: one opcode at a time until STOP, each handled by the group it
  /// belongs to.
  c10::IValue run() {
    while (true) {
      const Op op = *take(1);
      if (op == '.') return pop();  // STOP
      if (!(frame_or_constant(op) || number(op) || text(op) || memo(op) || collection(op) ||
            object(op))) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("unsupported pickle opcode ") + hex);
      }
    }
  }

  /// PROTO, FRAME, MARK and the constants None, True, False and empty containers.
  bool frame_or_constant(Op op) {
    switch (op) {
      case 0x80:  // PROTO
        take(1);
        return true;
      case 0x95:  // FRAME
        take(8);
        return true;
      case '(':  // MARK
        marks_.push_back(stack_.size());
        return true;
      case '}':  // EMPTY_DICT
        stack_.emplace_back(new_dict());
        return true;
      case ']':  // EMPTY_LIST
        stack_.emplace_back(c10::impl::GenericList(c10::AnyType::get()));
        return true;
      case ')':  // EMPTY_TUPLE
        stack_.emplace_back(c10::ivalue::Tuple::create({}));
        return true;
      case 'N':  // NONE
        stack_.emplace_back();
        return true;
      case 0x88:  // NEWTRUE
      case 0x89:  // NEWFALSE
        stack_.emplace_back(op == 0x88);
        return true;
      default:
        return false;
    }
  }

  /// BININT1, BININT2, BININT, LONG1 and BINFLOAT.
  bool number(Op op) {
    switch (op) {
      case 'K':
        stack_.emplace_back(static_cast<int64_t>(*take(1)));
        return true;
      case 'M':
        stack_.emplace_back(static_cast<int64_t>(little<uint16_t>()));
        return true;
      case 'J':
        stack_.emplace_back(static_cast<int64_t>(little<int32_t>()));
        return true;
      case 0x8a: {  // LONG1: n little-endian bytes, two's complement
        const size_t n = *take(1);
        if (n > 8) fail("an integer wider than 64 bits");
        uint64_t value = 0;
        const uint8_t* p = take(n);
        for (size_t i = 0; i < n; ++i) value |= static_cast<uint64_t>(p[i]) << (8 * i);
        if (n > 0 && n < 8 && (p[n - 1] & 0x80)) value |= ~uint64_t{0} << (8 * n);
        stack_.emplace_back(static_cast<int64_t>(value));
        return true;
      }
      case 'G': {  // BINFLOAT, big-endian
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
        double value;
        std::memcpy(&value, &bits, 8);
        stack_.emplace_back(value);
        return true;
      }
      default:
        return false;
    }
  }

  /// BINUNICODE, SHORT_BINUNICODE, SHORT_BINSTRING, BINSTRING and GLOBAL.
  bool text(Op op) {
    size_t n = 0;
    switch (op) {
      case 'X':  // BINUNICODE
      case 'T':  // BINSTRING
        n = little<uint32_t>();
        break;
      case 0x8c:  // SHORT_BINUNICODE
      case 'U':   // SHORT_BINSTRING
        n = *take(1);
        break;
      case 'c': {  // GLOBAL
        const auto module = line();
        const auto name = line();
        stack_.emplace_back(kGlobalTag + module + "." + name);
        return true;
      }
      default:
        return false;
    }
    stack_.emplace_back(std::string(reinterpret_cast<const char*>(take(n)), n));
    return true;
  }

  /// BINPUT, LONG_BINPUT, MEMOIZE, BINGET and LONG_BINGET.
  bool memo(Op op) {
    switch (op) {
      case 'q':
        memo_[*take(1)] = stack_.at(stack_.size() - 1);
        return true;
      case 'r':
        memo_[little<uint32_t>()] = stack_.at(stack_.size() - 1);
        return true;
      case 0x94:
        memo_[static_cast<uint32_t>(memo_.size())] = stack_.at(stack_.size() - 1);
        return true;
      case 'h':
      case 'j': {
        const uint32_t key = op == 'h' ? *take(1) : little<uint32_t>();
        const auto it = memo_.find(key);
        if (it == memo_.end()) fail("memo key " + std::to_string(key) + " unset");
        stack_.push_back(it->second);
        return true;
      }
      default:
        return false;
    }
  }

  /// SETITEM(S), APPEND(S), TUPLE and TUPLE1..3.
  bool collection(Op op) {
    switch (op) {
      case 's': {  // SETITEM
        auto value = pop();
        auto key = pop();
        set_items({std::move(key), std::move(value)});
        return true;
      }
      case 'u':  // SETITEMS
        set_items(pop_to_mark());
        return true;
      case 'a':  // APPEND
        append({pop()});
        return true;
      case 'e':  // APPENDS
        append(pop_to_mark());
        return true;
      case 't':  // TUPLE
        stack_.emplace_back(c10::ivalue::Tuple::create(pop_to_mark()));
        return true;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<c10::IValue> items(static_cast<size_t>(op - 0x84));
        for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
        stack_.emplace_back(c10::ivalue::Tuple::create(std::move(items)));
        return true;
      }
      default:
        return false;
    }
  }

  /// BINPERSID (a tensor storage), REDUCE (a call), BUILD, POP, POP_MARK and DUP.
  bool object(Op op) {
    switch (op) {
      case 'Q':  // BINPERSID
        stack_.push_back(load_storage(pop()));
        return true;
      case 'R': {  // REDUCE
        auto args = pop();
        auto callable = pop();
        if (!is_global(callable) || !args.isTuple()) fail("REDUCE of a non-global");
        stack_.push_back(call(global_name(callable), args.toTupleRef().elements().vec()));
        return true;
      }
      case 'b':  // BUILD: an OrderedDict's attributes (_metadata), not needed
      case '0':  // POP
        pop();
        return true;
      case '1':  // POP_MARK
        pop_to_mark();
        return true;
      case '2':  // DUP
        stack_.push_back(stack_.at(stack_.size() - 1));
        return true;
      default:
        return false;
    }
  }

  std::string path_;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader_;
  const uint8_t* bytes_ = nullptr;
  size_t size_ = 0, position_ = 0;
  std::vector<c10::IValue> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, c10::IValue> memo_;
  std::unordered_map<std::string, torch::Tensor> storages_;
};

/// What Python's torch.save wrote to `path`, as IValues (dicts are GenericDicts).
inline c10::IValue read_torch_save(const std::string& path) { return TorchSaveReader(path).read(); }

}  // namespace simsiam::detail
