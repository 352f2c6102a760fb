//! llama.cpp's own tokenizer keys (`tokenizer.ggml.*`), built from a Hugging
//! Face byte-level BPE `tokenizer.json` the way llama.cpp's converter does.
//! llama.cpp refuses a model file without them; this runtime reads
//! `tokenizer.huggingface.json` instead, so only files meant for llama.cpp
//! carry them (they are ~300k strings that a TaH load would parse for nothing).

use serde_json::Value as Json;

use super::Value;
use crate::error::{Error, Result};

/// llama.cpp's `llama_token_type` values.
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
const TOKEN_UNUSED: i32 = 5;

fn bad(reason: impl Into<String>) -> Error {
    Error::Tokenizer(format!("tokenizer.json: {}", reason.into()))
}

/// The `tokenizer.ggml.*` keys for a byte-level BPE tokenizer whose
/// embedding has `vocab_size` rows; ids without a token become `[PAD<id>]`
/// (unused), as llama.cpp's converter writes them. `pre` names llama.cpp's
/// pre-tokenizer (`qwen2` for Qwen2 and Qwen3).
pub fn ggml_tokenizer_metadata(
    tokenizer_json: &str,
    vocab_size: usize,
    pre: &str,
) -> Result<Vec<(String, Value)>> {
    let json: Json = serde_json::from_str(tokenizer_json).map_err(|e| bad(e.to_string()))?;
    let model = &json["model"];
    if model["type"] != "BPE" {
        return Err(bad("not a BPE tokenizer"));
    }
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; vocab_size];
    let mut put = |id: Option<u64>, text: &str, kind: i32| -> Result<()> {
        let slot = id
            .and_then(|id| tokens.get_mut(usize::try_from(id).ok()?))
            .ok_or_else(|| bad(format!("token `{text}` has no id below {vocab_size}")))?;
        *slot = Some((text.to_string(), kind));
        Ok(())
    };
    let vocab = model["vocab"].as_object().ok_or_else(|| bad("no vocab"))?;
    for (text, id) in vocab {
        put(id.as_u64(), text, TOKEN_NORMAL)?;
    }
    let mut bos = None;
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let text = added["content"]
            .as_str()
            .ok_or_else(|| bad("added token"))?;
        // llama.cpp's converter also treats `<|...|>` tokens as control tokens.
        let control = added["special"].as_bool() == Some(true)
            || (text.starts_with("<|") && text.ends_with("|>"));
        let kind = if control {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        };
        put(added["id"].as_u64(), text, kind)?;
        if text == "<|endoftext|>" {
            bos = added["id"].as_u64();
        }
    }
    let (texts, kinds): (Vec<Value>, Vec<Value>) = tokens
        .into_iter()
        .enumerate()
        .map(|(id, token)| {
            let (text, kind) = token.unwrap_or_else(|| (format!("[PAD{id}]"), TOKEN_UNUSED));
            (Value::String(text), Value::I32(kind))
        })
        .unzip();
    // Merges are "a b" strings, or [a, b] pairs in newer tokenizer.json files.
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| bad("no merges"))?
        .iter()
        .map(|m| match m {
            Json::String(s) => Some(s.clone()),
            Json::Array(pair) => match pair.as_slice() {
                [Json::String(a), Json::String(b)] => Some(format!("{a} {b}")),
                _ => None,
            },
            _ => None,
        })
        .map(|m| m.map(Value::String).ok_or_else(|| bad("malformed merge")))
        .collect::<Result<Vec<_>>>()?;
    let mut out = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        ("tokenizer.ggml.tokens", Value::Array(texts)),
        ("tokenizer.ggml.token_type", Value::Array(kinds)),
        ("tokenizer.ggml.merges", Value::Array(merges)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ];
    if let Some(id) = bos.and_then(|id| u32::try_from(id).ok()) {
        out.push(("tokenizer.ggml.bos_token_id", Value::U32(id)));
        out.push(("tokenizer.ggml.padding_token_id", Value::U32(id)));
    }
    Ok(out.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(m: &'a [(String, Value)], k: &str) -> &'a Value {
        &m.iter().find(|(name, _)| name == k).unwrap().1
    }

    #[test]
    fn pads_the_vocabulary_and_types_tokens() {
        let json = r#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
            "merges": [["a", "b"]]},
            "added_tokens": [{"id": 3, "content": "<|endoftext|>", "special": true},
                             {"id": 4, "content": "<think>", "special": false}]}"#;
        let m = ggml_tokenizer_metadata(json, 6, "qwen2").unwrap();
        let Value::Array(tokens) = key(&m, "tokenizer.ggml.tokens") else {
            panic!()
        };
        assert_eq!(tokens.len(), 6);
        assert_eq!(tokens[5], Value::String("[PAD5]".into()));
        assert_eq!(
            key(&m, "tokenizer.ggml.token_type"),
            &Value::Array([1, 1, 1, 3, 4, 5].map(Value::I32).to_vec())
        );
        assert_eq!(
            key(&m, "tokenizer.ggml.merges"),
            &Value::Array(vec![Value::String("a b".into())])
        );
        assert_eq!(key(&m, "tokenizer.ggml.bos_token_id"), &Value::U32(3));
        // An id past the embedding is an error, not a silent drop.
        assert!(ggml_tokenizer_metadata(json, 4, "qwen2").is_err());
        assert!(ggml_tokenizer_metadata("{}", 4, "qwen2").is_err());
    }
}
