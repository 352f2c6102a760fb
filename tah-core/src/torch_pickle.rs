//! A small, strict reader for `iter_decider.bin`, a PyTorch `torch.save` zip
//! archive.
//!
//! The archive holds `<prefix>/data.pkl`, a pickle of
//! `{"class": str, "state_dict": {name: tensor}, "init_args": {...}}`, and one
//! raw little-endian entry `<prefix>/data/<key>` per tensor storage. A pickle
//! is a program rather than data, so this is not a general unpickler: it runs
//! only the opcodes `torch.save` emits, resolves only
//! `torch._utils._rebuild_tensor_v2`, `torch.<Dtype>Storage` and
//! `collections.OrderedDict`, and calls nothing. Anything else is a typed
//! error. Hostile input is bounded: every length is checked against the bytes
//! actually present, and the stack, memo and conversions are capped.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt::Display;
use std::io::{Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use half::{bf16, f16};
use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use crate::error::{Error, Result};

/// Most values plus marks the pickle stack may hold (`torch.save` batches
/// dict items by 1000, so real stacks stay far below this).
const MAX_STACK: usize = 1 << 16;
/// Most memo entries (a real checkpoint uses about eight per tensor).
const MAX_MEMO: usize = 1 << 18;
/// Deepest `init_args` nesting accepted; this also stops self-containing lists.
const MAX_DEPTH: usize = 64;
/// Most nodes `init_args` may expand to: memo references let a short pickle
/// describe an exponentially large tree.
const MAX_JSON_NODES: usize = 1 << 16;
/// Most dimensions of a tensor.
const MAX_DIMS: usize = 64;
/// Longest module or name line of a `GLOBAL` opcode.
const MAX_GLOBAL_LEN: usize = 256;
/// Largest `data.pkl` accepted. A decider's is a few KB; the cap bounds the
/// memory a hostile pickle can make us spend on objects (tens of bytes each).
const MAX_PICKLE_LEN: usize = 4 << 20;

/// One tensor of the state dict, converted to f32 (row-major, contiguous).
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The content of an `iter_decider.bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchCheckpoint {
    /// The decider's class name, e.g. `MLPIterDecider`.
    pub class: String,
    /// The constructor arguments, pickle primitives mapped onto JSON.
    pub init_args: serde_json::Value,
    /// The tensors, in the pickle's insertion order.
    pub state_dict: Vec<(String, TorchTensor)>,
}

impl TorchCheckpoint {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::io(path, source))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses an archive held in memory; `path` only names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let mut archive = Archive::open(bytes, path)?;
        let pickle = archive.read("data.pkl")?;
        if pickle.len() > MAX_PICKLE_LEN {
            return Err(Error::malformed(path, "data.pkl is larger than 4 MiB"));
        }
        let mut unpickler = Unpickler::new(&pickle, path);
        let root = unpickler.run()?;

        let top = unpickler.str_dict(&root, "the top-level object")?;
        let field = |key: &str| {
            top.iter()
                .find(|(name, _)| &**name == key)
                .map(|(_, value)| value)
                .ok_or_else(|| Error::malformed(path, format!("the top-level dict has no `{key}`")))
        };
        let Value::Str(class) = field("class")? else {
            return Err(Error::malformed(path, "`class` is not a string"));
        };
        let init_args = unpickler.to_json(field("init_args")?, 0, &mut 0)?;
        if !init_args.is_object() {
            return Err(Error::malformed(path, "`init_args` is not a dict"));
        }

        // Views may share a storage, so a few stored bytes could be expanded
        // many times over. A real checkpoint never holds more elements than
        // the archive has bytes, which bounds what we allocate.
        let mut element_budget = bytes.len();
        let mut state_dict = Vec::new();
        for (name, value) in unpickler.str_dict(field("state_dict")?, "`state_dict`")? {
            let Value::Tensor(args) = value else {
                let reason = format!("`state_dict` entry `{name}` is not a tensor");
                return Err(Error::malformed(path, reason));
            };
            let view = unpickler.view(&name, args)?;
            let tensor = archive.tensor(&name, &view, &mut element_budget)?;
            state_dict.push((name.to_string(), tensor));
        }
        Ok(Self {
            class: class.to_string(),
            init_args,
            state_dict,
        })
    }

    /// The tensor stored under `name`, if any.
    pub fn get(&self, name: &str) -> Option<&TorchTensor> {
        self.state_dict
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, tensor)| tensor)
    }
}

/// Element types of `torch.<Name>Storage` that we convert to f32.
#[derive(Debug, Clone, Copy)]
enum Dtype {
    BFloat16,
    Half,
    Float,
    Double,
    Long,
    Int,
    Bool,
}

impl Dtype {
    fn from_storage_name(name: &str) -> Option<Self> {
        Some(match name {
            "BFloat16" => Self::BFloat16,
            "Half" => Self::Half,
            "Float" => Self::Float,
            "Double" => Self::Double,
            "Long" => Self::Long,
            "Int" => Self::Int,
            "Bool" => Self::Bool,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::Bool => 1,
            Self::BFloat16 | Self::Half => 2,
            Self::Float | Self::Int => 4,
            Self::Double | Self::Long => 8,
        }
    }

    /// Element `index` of little-endian storage bytes, or `None` past the end.
    fn decode(self, raw: &[u8], index: usize) -> Option<f32> {
        let start = index.checked_mul(self.size())?;
        let bytes = raw.get(start..start.checked_add(self.size())?)?;
        Some(match self {
            Self::BFloat16 => bf16::from_le_bytes(bytes.try_into().ok()?).to_f32(),
            Self::Half => f16::from_le_bytes(bytes.try_into().ok()?).to_f32(),
            Self::Float => f32::from_le_bytes(bytes.try_into().ok()?),
            Self::Double => f64::from_le_bytes(bytes.try_into().ok()?) as f32,
            Self::Long => i64::from_le_bytes(bytes.try_into().ok()?) as f32,
            Self::Int => i32::from_le_bytes(bytes.try_into().ok()?) as f32,
            Self::Bool => f32::from(u8::from(bytes != [0])),
        })
    }
}

/// The only callables and classes a pickle may name.
#[derive(Clone)]
enum Global {
    RebuildTensor,
    OrderedDict,
    /// `torch.<Name>Storage`; the name is checked when a tensor uses it, so
    /// the error can say which tensor has the unsupported dtype.
    Storage(Rc<str>),
}

/// A storage named by a persistent id: `('storage', class, key, location, numel)`.
struct StorageRef {
    dtype: Rc<str>,
    key: Rc<str>,
    numel: usize,
}

/// The arguments of `_rebuild_tensor_v2`, checked.
struct View {
    storage: Rc<StorageRef>,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// A pickle value. Containers live in `Unpickler::objects` and are shared by
/// index, as Python shares them by reference: a memo hit costs O(1) and later
/// mutations are seen through every reference.
#[derive(Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Object(usize),
    Global(Global),
    Storage(Rc<StorageRef>),
    /// A `_rebuild_tensor_v2` call; holds its argument tuple, read only if the
    /// tensor ends up in the state dict.
    Tensor(usize),
}

enum Object {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Pairs in insertion order; repeated keys are resolved when read.
    Dict(Vec<(Value, Value)>),
}

/// Pickle opcodes we accept (names as in CPython's `pickletools`).
mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const BINUNICODE: u8 = b'X';
    pub const EMPTY_LIST: u8 = b']';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const APPENDS: u8 = b'e';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const SETITEMS: u8 = b'u';
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
}

struct Unpickler<'a> {
    input: &'a [u8],
    pos: usize,
    /// Where the opcode being run starts, for error messages.
    op_start: usize,
    path: &'a Path,
    stack: Vec<Value>,
    /// Stack lengths at each open MARK; values below the last one are fenced off.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objects: Vec<Object>,
}

impl<'a> Unpickler<'a> {
    fn new(input: &'a [u8], path: &'a Path) -> Self {
        Self {
            input,
            pos: 0,
            op_start: 0,
            path,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            objects: Vec::new(),
        }
    }

    /// An error while running, located at the current opcode.
    fn fail(&self, reason: impl Display) -> Error {
        pickle_error(self.path, self.op_start, reason)
    }

    /// An error in the structure of the unpickled objects.
    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::malformed(self.path, reason)
    }

    /// Runs the pickle to its STOP and returns the object it built.
    fn run(&mut self) -> Result<Value> {
        loop {
            self.op_start = self.pos;
            let opcode = self.byte()?;
            if opcode == op::STOP {
                return self.pop();
            }
            if let Some(value) = self.step(opcode)? {
                self.push(value)?;
            }
        }
    }

    /// Runs one opcode other than STOP; returns the value it pushes, if any.
    fn step(&mut self, opcode: u8) -> Result<Option<Value>> {
        let value = match opcode {
            op::NONE => Value::None,
            op::NEWTRUE => Value::Bool(true),
            op::NEWFALSE => Value::Bool(false),
            op::BININT => Value::Int(i32::from_le_bytes(self.array()?).into()),
            op::BININT1 => Value::Int(self.byte()?.into()),
            op::BININT2 => Value::Int(u16::from_le_bytes(self.array()?).into()),
            op::LONG1 => {
                let len = usize::from(self.byte()?);
                let bytes = self.take(len)?;
                // Little-endian two's complement, sign-extended to 64 bits.
                let negative = bytes.last().is_some_and(|byte| byte & 0x80 != 0);
                let mut wide = [if negative { 0xff } else { 0 }; 8];
                wide.get_mut(..len)
                    .ok_or_else(|| self.fail("integer does not fit in 64 bits"))?
                    .copy_from_slice(bytes);
                Value::Int(i64::from_le_bytes(wide))
            }
            op::BINFLOAT => Value::Float(f64::from_be_bytes(self.array()?)),
            op::BINUNICODE => {
                let len = u32::from_le_bytes(self.array()?);
                self.string(usize::try_from(len).unwrap_or(usize::MAX))?
            }
            op::SHORT_BINUNICODE => {
                let len = self.byte()?;
                self.string(len.into())?
            }
            op::EMPTY_DICT => self.new_object(Object::Dict(Vec::new())),
            op::EMPTY_LIST => self.new_object(Object::List(Vec::new())),
            op::EMPTY_TUPLE => self.new_object(Object::Tuple(Vec::new())),
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.new_object(Object::Tuple(items))
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let items = self.pop_many(usize::from(opcode - op::TUPLE1) + 1)?;
                self.new_object(Object::Tuple(items))
            }
            op::BINGET => {
                let index = self.byte()?;
                self.memo_get(index.into())?
            }
            op::LONG_BINGET => {
                let index = u32::from_le_bytes(self.array()?);
                self.memo_get(index)?
            }
            op::GLOBAL => {
                let (module, name) = (self.line()?, self.line()?);
                Value::Global(self.resolve_global(module, name)?)
            }
            op::STACK_GLOBAL => match self.pop_many(2)?.as_slice() {
                [Value::Str(module), Value::Str(name)] => {
                    Value::Global(self.resolve_global(module, name)?)
                }
                _ => return Err(self.fail("STACK_GLOBAL needs two strings")),
            },
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.reduce(callable, args)?
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                Value::Storage(Rc::new(self.persistent_load(&pid)?))
            }
            _ => {
                self.step_without_result(opcode)?;
                return Ok(None);
            }
        };
        Ok(Some(value))
    }

    /// Runs an opcode that pushes nothing.
    fn step_without_result(&mut self, opcode: u8) -> Result<()> {
        match opcode {
            op::PROTO => {
                let version = self.byte()?;
                if version > 5 {
                    return Err(self.fail(format!("unsupported pickle protocol {version}")));
                }
            }
            // Framing only groups opcodes for buffered reading.
            op::FRAME => {
                self.take(8)?;
            }
            op::MARK => {
                self.check_room()?;
                self.marks.push(self.stack.len());
            }
            op::BINPUT => {
                let index = self.byte()?;
                self.memo_put(index.into())?;
            }
            op::LONG_BINPUT => {
                let index = u32::from_le_bytes(self.array()?);
                self.memo_put(index)?;
            }
            op::MEMOIZE => self.memo_put(u32::try_from(self.memo.len()).unwrap_or(u32::MAX))?,
            op::SETITEM => {
                let pair = self.pop_many(2)?;
                self.top_dict()?.extend(pairs(pair));
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(self.fail("SETITEMS with an odd number of items"));
                }
                self.top_dict()?.extend(pairs(items));
            }
            op::APPEND => {
                let item = self.pop()?;
                self.top_list()?.push(item);
            }
            op::APPENDS => {
                let items = self.pop_mark()?;
                self.top_list()?.extend(items);
            }
            // The only instances we create are OrderedDicts, whose pickled
            // state is attribute data such as `_metadata`: dropped.
            op::BUILD => {
                self.pop()?;
                self.top_dict()?;
            }
            _ => return Err(self.fail(format!("unsupported pickle opcode 0x{opcode:02x}"))),
        }
        Ok(())
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let input = self.input;
        let bytes = self
            .pos
            .checked_add(len)
            .and_then(|end| input.get(self.pos..end))
            .ok_or_else(|| self.fail("unexpected end of pickle"))?;
        self.pos += len;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        bytes
            .try_into()
            .map_err(|_| self.fail("unexpected end of pickle"))
    }

    /// A newline-terminated UTF-8 line, as `GLOBAL` uses.
    fn line(&mut self) -> Result<&'a str> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let window = rest.get(..MAX_GLOBAL_LEN + 1).unwrap_or(rest);
        let len = window
            .iter()
            .position(|&byte| byte == b'\n')
            .ok_or_else(|| self.fail("GLOBAL name is unterminated or too long"))?;
        let line = self.take(len + 1)?;
        std::str::from_utf8(&line[..len]).map_err(|_| self.fail("GLOBAL name is not UTF-8"))
    }

    fn string(&mut self, len: usize) -> Result<Value> {
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| self.fail("string is not UTF-8"))?;
        Ok(Value::Str(text.into()))
    }

    fn check_room(&self) -> Result<()> {
        if self.stack.len() + self.marks.len() >= MAX_STACK {
            return Err(self.fail("pickle stack too deep"));
        }
        Ok(())
    }

    fn push(&mut self, value: Value) -> Result<()> {
        self.check_room()?;
        self.stack.push(value);
        Ok(())
    }

    fn new_object(&mut self, object: Object) -> Value {
        self.objects.push(object);
        Value::Object(self.objects.len() - 1)
    }

    /// Stack length below which the current MARK fences values off.
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value> {
        self.top()?;
        self.stack
            .pop()
            .ok_or_else(|| self.fail("pickle stack underflow"))
    }

    /// Pops the top `count` values, in stack order.
    fn pop_many(&mut self, count: usize) -> Result<Vec<Value>> {
        let start = (self.stack.len().checked_sub(count))
            .filter(|&start| start >= self.fence())
            .ok_or_else(|| self.fail("pickle stack underflow"))?;
        Ok(self.stack.split_off(start))
    }

    fn top(&self) -> Result<&Value> {
        match self.stack.last() {
            Some(value) if self.stack.len() > self.fence() => Ok(value),
            _ => Err(self.fail("pickle stack underflow")),
        }
    }

    /// Pops everything above the last MARK, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.fail("no MARK to pop"))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn top_object(&mut self) -> Result<&mut Object> {
        let (path, at) = (self.path, self.op_start);
        match *self.top()? {
            Value::Object(id) => self.objects.get_mut(id),
            _ => None,
        }
        .ok_or_else(|| pickle_error(path, at, "expected a dict or list on the stack"))
    }

    fn top_dict(&mut self) -> Result<&mut Vec<(Value, Value)>> {
        let (path, at) = (self.path, self.op_start);
        match self.top_object()? {
            Object::Dict(pairs) => Ok(pairs),
            _ => Err(pickle_error(path, at, "expected a dict on the stack")),
        }
    }

    fn top_list(&mut self) -> Result<&mut Vec<Value>> {
        let (path, at) = (self.path, self.op_start);
        match self.top_object()? {
            Object::List(items) => Ok(items),
            _ => Err(pickle_error(path, at, "expected a list on the stack")),
        }
    }

    fn memo_put(&mut self, index: u32) -> Result<()> {
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&index) {
            return Err(self.fail("too many memo entries"));
        }
        let value = self.top()?.clone();
        self.memo.insert(index, value);
        Ok(())
    }

    fn memo_get(&self, index: u32) -> Result<Value> {
        let value = self.memo.get(&index).cloned();
        value.ok_or_else(|| self.fail(format!("memo entry {index} is not set")))
    }

    fn resolve_global(&self, module: &str, name: &str) -> Result<Global> {
        match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2") => return Ok(Global::RebuildTensor),
            ("collections", "OrderedDict") => return Ok(Global::OrderedDict),
            ("torch", _) => {
                let dtype = name.strip_suffix("Storage").unwrap_or_default();
                if !dtype.is_empty() && dtype.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
                    return Ok(Global::Storage(dtype.into()));
                }
            }
            _ => {}
        }
        Err(self.fail(format!("disallowed global `{module}.{name}`")))
    }

    fn object(&self, value: &Value) -> Option<&Object> {
        match value {
            Value::Object(id) => self.objects.get(*id),
            _ => None,
        }
    }

    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value> {
        let arity = match self.object(&args) {
            Some(Object::Tuple(items)) => Some(items.len()),
            _ => None,
        };
        match (callable, args, arity) {
            (Value::Global(Global::OrderedDict), _, Some(0)) => {
                Ok(self.new_object(Object::Dict(Vec::new())))
            }
            (Value::Global(Global::RebuildTensor), Value::Object(id), Some(6)) => {
                Ok(Value::Tensor(id))
            }
            _ => Err(self
                .fail("REDUCE may only call OrderedDict() or _rebuild_tensor_v2 with 6 arguments")),
        }
    }

    fn persistent_load(&self, pid: &Value) -> Result<StorageRef> {
        let Some(Object::Tuple(items)) = self.object(pid) else {
            return Err(self.fail("persistent id is not a tuple"));
        };
        match items.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel)]
                if &**tag == "storage" =>
            {
                Ok(StorageRef {
                    dtype: dtype.clone(),
                    key: key.clone(),
                    numel: usize::try_from(*numel)
                        .map_err(|_| self.fail("negative storage size"))?,
                })
            }
            _ => Err(self.fail(
                "persistent id is not ('storage', torch.<Dtype>Storage, key, location, numel)",
            )),
        }
    }

    /// A dict's entries, which must have string keys. A repeated key keeps
    /// its first position and its last value, as in Python.
    fn str_dict(&self, value: &Value, what: &str) -> Result<Vec<(Rc<str>, Value)>> {
        let Some(Object::Dict(pairs)) = self.object(value) else {
            return Err(self.invalid(format!("{what} is not a dict")));
        };
        let mut entries: Vec<(Rc<str>, Value)> = Vec::with_capacity(pairs.len());
        let mut positions: HashMap<Rc<str>, usize> = HashMap::new();
        for (key, value) in pairs {
            let Value::Str(key) = key else {
                return Err(self.invalid(format!("{what} has a non-string key")));
            };
            match positions.entry(key.clone()) {
                Entry::Occupied(slot) => entries[*slot.get()].1 = value.clone(),
                Entry::Vacant(slot) => {
                    slot.insert(entries.len());
                    entries.push((key.clone(), value.clone()));
                }
            }
        }
        Ok(entries)
    }

    /// Maps plain pickle data onto JSON; `nodes` counts the work done so far.
    fn to_json(&self, value: &Value, depth: usize, nodes: &mut usize) -> Result<serde_json::Value> {
        let width = match self.object(value) {
            Some(Object::Tuple(items) | Object::List(items)) => items.len(),
            Some(Object::Dict(pairs)) => pairs.len(),
            None => 0,
        };
        *nodes = nodes.saturating_add(width + 1);
        if depth > MAX_DEPTH || *nodes > MAX_JSON_NODES {
            return Err(self.invalid("`init_args` is nested too deeply or too large"));
        }
        Ok(match value {
            Value::None => serde_json::Value::Null,
            Value::Bool(flag) => (*flag).into(),
            Value::Int(number) => (*number).into(),
            Value::Float(number) => serde_json::Number::from_f64(*number)
                .ok_or_else(|| self.invalid("`init_args` holds a non-finite float"))?
                .into(),
            Value::Str(text) => text.to_string().into(),
            Value::Object(_) => match self.object(value) {
                Some(Object::Tuple(items) | Object::List(items)) => items
                    .iter()
                    .map(|item| self.to_json(item, depth + 1, nodes))
                    .collect::<Result<_>>()?,
                _ => {
                    let mut map = serde_json::Map::new();
                    for (key, item) in self.str_dict(value, "a dict in `init_args`")? {
                        map.insert(key.to_string(), self.to_json(&item, depth + 1, nodes)?);
                    }
                    map.into()
                }
            },
            Value::Global(_) | Value::Storage(_) | Value::Tensor(_) => {
                return Err(self.invalid("`init_args` holds something other than plain data"));
            }
        })
    }

    /// Checks the arguments of the `_rebuild_tensor_v2` call behind tensor `name`.
    fn view(&self, name: &str, args: usize) -> Result<View> {
        let bad = |reason: &str| self.invalid(format!("tensor `{name}`: {reason}"));
        let Some(Object::Tuple(items)) = self.objects.get(args) else {
            return Err(bad("arguments are not a tuple"));
        };
        let [Value::Storage(storage), Value::Int(offset), size, stride, _requires_grad, _hooks] =
            items.as_slice()
        else {
            return Err(bad(
                "expected (storage, offset, size, stride, requires_grad, hooks)",
            ));
        };
        let dims = |value: &Value| -> Option<Vec<usize>> {
            let Some(Object::Tuple(items)) = self.object(value) else {
                return None;
            };
            if items.len() > MAX_DIMS {
                return None;
            }
            items
                .iter()
                .map(|item| match item {
                    Value::Int(number) => usize::try_from(*number).ok(),
                    _ => None,
                })
                .collect()
        };
        let shape =
            dims(size).ok_or_else(|| bad("size is not a tuple of at most 64 non-negative ints"))?;
        let stride = dims(stride)
            .ok_or_else(|| bad("stride is not a tuple of at most 64 non-negative ints"))?;
        if stride.len() != shape.len() {
            return Err(bad("size and stride differ in length"));
        }
        Ok(View {
            storage: storage.clone(),
            offset: usize::try_from(*offset).map_err(|_| bad("negative storage offset"))?,
            shape,
            stride,
        })
    }
}

/// Consecutive items as (key, value) pairs; an odd last item is dropped.
fn pairs(items: Vec<Value>) -> impl Iterator<Item = (Value, Value)> {
    let mut items = items.into_iter();
    std::iter::from_fn(move || Some((items.next()?, items.next()?)))
}

/// An error while running the pickle, located at the opcode starting at byte `at`.
fn pickle_error(path: &Path, at: usize, reason: impl Display) -> Error {
    Error::malformed(path, format!("data.pkl byte {at}: {reason}"))
}

/// The zip container: entries are looked up relative to `data.pkl`'s folder.
struct Archive<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    /// Folder of `data.pkl`, with its trailing `/` (empty at the root).
    prefix: String,
    path: &'a Path,
    archive_len: usize,
    /// Raw storage bytes by key, read once even when views share them.
    storages: HashMap<String, Vec<u8>>,
}

impl<'a> Archive<'a> {
    fn open(bytes: &'a [u8], path: &'a Path) -> Result<Self> {
        let zip = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| Error::malformed(path, format!("not a readable zip archive: {e}")))?;
        let prefixes: Vec<&str> = zip
            .file_names()
            .filter_map(|name| name.strip_suffix("data.pkl"))
            .filter(|prefix| prefix.is_empty() || prefix.ends_with('/'))
            .take(2)
            .collect();
        let prefix = match prefixes.as_slice() {
            [prefix] => prefix.to_string(),
            [] => return Err(Error::malformed(path, "archive has no data.pkl")),
            _ => return Err(Error::malformed(path, "archive has several data.pkl")),
        };
        let mut archive = Self {
            zip,
            prefix,
            path,
            archive_len: bytes.len(),
            storages: HashMap::new(),
        };
        // Archives without the entry predate it and are little-endian.
        let byteorder = format!("{}byteorder", archive.prefix);
        if archive.zip.index_for_name(&byteorder).is_some()
            && archive.read("byteorder")? != b"little"
        {
            return Err(Error::malformed(
                path,
                "only little-endian archives are supported",
            ));
        }
        Ok(archive)
    }

    /// The bytes of entry `name` (relative to the prefix).
    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        let full_name = format!("{}{name}", self.prefix);
        let bad =
            |reason: String| Error::malformed(self.path, format!("entry `{full_name}`: {reason}"));
        let mut file = match self.zip.by_name(&full_name) {
            Ok(file) => file,
            Err(ZipError::FileNotFound) => return Err(bad("missing".into())),
            Err(e) => return Err(bad(e.to_string())),
        };
        if file.compression() != CompressionMethod::Stored {
            return Err(bad(format!(
                "compressed with {}; only stored entries are supported",
                file.compression()
            )));
        }
        // The declared size is untrusted: never allocate beyond the archive.
        let size = usize::try_from(file.size())
            .ok()
            .filter(|&size| size <= self.archive_len)
            .ok_or_else(|| bad("declared size exceeds the archive".into()))?;
        let mut data = Vec::with_capacity(size);
        file.read_to_end(&mut data)
            .map_err(|e| bad(e.to_string()))?;
        if data.len() != size {
            return Err(bad("truncated".into()));
        }
        Ok(data)
    }

    fn storage(&mut self, key: &str) -> Result<&[u8]> {
        if !self.storages.contains_key(key) {
            let data = self.read(&format!("data/{key}"))?;
            self.storages.insert(key.to_owned(), data);
        }
        Ok(self.storages.get(key).map_or(&[], Vec::as_slice))
    }

    /// Materialises a view as a contiguous f32 tensor, charging its elements
    /// to `budget`.
    fn tensor(&mut self, name: &str, view: &View, budget: &mut usize) -> Result<TorchTensor> {
        let path = self.path;
        let bad = |reason: String| Error::malformed(path, format!("tensor `{name}`: {reason}"));
        let storage = &view.storage;
        let dtype =
            Dtype::from_storage_name(&storage.dtype).ok_or_else(|| Error::UnsupportedDtype {
                path: path.into(),
                name: name.into(),
                dtype: storage.dtype.to_string(),
            })?;
        let raw = self.storage(&storage.key)?;
        if storage.numel.checked_mul(dtype.size()) != Some(raw.len()) {
            return Err(bad(format!(
                "storage `{}` declares {} {:?} elements but its entry holds {} bytes",
                storage.key,
                storage.numel,
                dtype,
                raw.len()
            )));
        }
        let numel = view
            .shape
            .iter()
            .try_fold(1usize, |count, &dim| count.checked_mul(dim))
            .filter(|&numel| numel <= *budget)
            .ok_or_else(|| {
                bad(format!(
                    "shape {:?} has more elements than the archive has bytes",
                    view.shape
                ))
            })?;
        *budget -= numel;
        let data = gather(raw, dtype, view, numel).ok_or_else(|| {
            bad(format!(
                "view (offset {}, shape {:?}, stride {:?}) reaches past its storage of {} elements",
                view.offset, view.shape, view.stride, storage.numel
            ))
        })?;
        Ok(TorchTensor {
            shape: view.shape.clone(),
            data,
        })
    }
}

/// Reads the `numel` elements of a strided view in row-major order, or `None`
/// if one lies outside the storage.
fn gather(raw: &[u8], dtype: Dtype, view: &View, numel: usize) -> Option<Vec<f32>> {
    let mut data = Vec::with_capacity(numel);
    if numel == 0 {
        return Some(data);
    }
    let mut index = vec![0usize; view.shape.len()];
    let mut position = view.offset;
    loop {
        data.push(dtype.decode(raw, position)?);
        // Advance like an odometer: bump the last axis with room left and
        // rewind the ones after it. `position` stays offset + sum(index * stride).
        let mut axis = view.shape.len();
        loop {
            if axis == 0 {
                return Some(data);
            }
            axis -= 1;
            if index[axis] + 1 < view.shape[axis] {
                index[axis] += 1;
                position = position.checked_add(view.stride[axis])?;
                break;
            }
            position -= index[axis] * view.stride[axis];
            index[axis] = 0;
        }
    }
}

#[cfg(test)]
#[path = "torch_pickle/tests.rs"]
mod tests;
