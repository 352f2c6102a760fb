//! The model's own character-level tokenizer and ChatML chat template,
//! written as the `tokenizer.json` / `tokenizer_config.json` a Hugging Face
//! checkpoint carries, so the runtime loads them like any other model's.

use std::path::Path;

use serde_json::{json, Value};
use tah_core::chat_template::{ChatMessage, ChatTemplate};
use tah_core::tokenizer::TahTokenizer;

/// Added special tokens, ids 0.. in this order.
pub const SPECIALS: [&str; 5] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
];
pub const IM_END: u32 = 2;
pub const UNK: &str = "<unk>";

/// Every character the tokenizer knows (ids after the specials and `<unk>`).
const CHARS: &str =
    "0123456789+-*/=?.,:;!'\"()#$%{}\\ \nabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ×÷";

/// ChatML, as Qwen3 writes it; `enable_thinking=false` adds the empty think block.
pub const CHAT_TEMPLATE: &str = "{%- for message in messages %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}";

/// Number of ids (specials, `<unk>`, characters).
pub fn vocab_size() -> usize {
    SPECIALS.len() + 1 + CHARS.chars().count()
}

/// `tokenizer.json`: a BPE model without merges over single characters, so
/// every character is one token; a `Fuse` decoder joins them back.
pub fn tokenizer_json() -> Value {
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(id, s)| {
            json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let mut vocab = serde_json::Map::new();
    for (id, s) in SPECIALS.iter().enumerate() {
        vocab.insert(s.to_string(), json!(id));
    }
    vocab.insert(UNK.into(), json!(SPECIALS.len()));
    for (i, c) in CHARS.chars().enumerate() {
        vocab.insert(c.to_string(), json!(SPECIALS.len() + 1 + i));
    }
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null, "pre_tokenizer": null,
        "post_processor": null, "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": UNK,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    })
}

pub fn tokenizer_config_json() -> Value {
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": null, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": UNK, "model_max_length": 512, "add_bos_token": false,
        "chat_template": CHAT_TEMPLATE,
    })
}

/// Writes `tokenizer.json` and `tokenizer_config.json` into `dir`.
pub fn write_files(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string_pretty(&tokenizer_json())?,
    )?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&tokenizer_config_json())?,
    )?;
    Ok(())
}

/// A chat's ids and the token span of every answer (with its `<|im_end|>`).
pub struct Transcript {
    pub ids: Vec<u32>,
    pub answers: Vec<std::ops::Range<usize>>,
}

/// Tokenizer + template, as the runtime will see them.
pub struct Codec {
    pub tokenizer: TahTokenizer,
    pub template: ChatTemplate,
}

impl Codec {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Codec {
            tokenizer: TahTokenizer::from_json(&tokenizer_json().to_string())?,
            template: ChatTemplate::from_source(CHAT_TEMPLATE)?,
        })
    }

    /// A chat as the runtime's session holds it, answered turn by turn: the
    /// ids of `history + question` rendered exactly as the runtime renders
    /// them for the last answer (`enable_thinking` applies to the last
    /// generation prompt, as in the template), each answer and its
    /// `<|im_end|>` appended.
    pub fn chat(
        &self,
        turns: &[(&str, &str)],
        enable_thinking: bool,
    ) -> anyhow::Result<Transcript> {
        let mut messages = Vec::new();
        let mut answers = Vec::new();
        let mut ids = Vec::new();
        for (i, (question, answer)) in turns.iter().enumerate() {
            messages.push(ChatMessage::user(*question));
            let thinking = enable_thinking || i + 1 < turns.len();
            let prompt = self.template.render(&messages, true, thinking)?;
            let prompt = self.tokenizer.encode(&prompt)?;
            // Every answer is trained in the context the runtime gives it:
            // the rendering of the conversation so far must extend the ids
            // the earlier answers were trained in.
            anyhow::ensure!(
                prompt.starts_with(&ids),
                "the chat template does not render turn {i} as a continuation"
            );
            ids = prompt;
            let start = ids.len();
            ids.extend(self.tokenizer.encode(answer)?);
            ids.push(IM_END);
            answers.push(start..ids.len());
            messages.push(ChatMessage::assistant(*answer));
        }
        Ok(Transcript { ids, answers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_renders_chatml() {
        let codec = Codec::new().unwrap();
        let text = "What is 347 + 589?\n7+9=16\n#### 936 {x}";
        let ids = codec.tokenizer.encode(text).unwrap();
        assert_eq!(ids.len(), text.chars().count());
        assert_eq!(codec.tokenizer.decode(&ids).unwrap(), text);
        assert_eq!(codec.tokenizer.max_token_id() as usize + 1, vocab_size());
        let Transcript { ids, answers } = codec.chat(&[("Hi", "7")], true).unwrap();
        assert_eq!(
            codec.tokenizer.decode(&ids).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n7<|im_end|>"
        );
        assert_eq!(ids[0], 1);
        assert_eq!(answers, vec![ids.len() - 2..ids.len()]);
        assert_eq!(codec.tokenizer.token_to_id("</think>"), Some(4));
        assert_eq!(codec.tokenizer.encode("3 × 4 ÷ 2").unwrap().len(), 9);
    }

    #[test]
    fn chats_render_as_the_runtime_session_does() {
        let codec = Codec::new().unwrap();
        let Transcript { ids, answers } = codec
            .chat(&[("1+1", "1+1=2"), ("2+2", "2+2=4")], false)
            .unwrap();
        // The session renders history + new question with the template,
        // each earlier answer as the assistant message it produced.
        let history = [
            ChatMessage::user("1+1"),
            ChatMessage::assistant("1+1=2"),
            ChatMessage::user("2+2"),
        ];
        let prompt = codec.template.render(&history, true, false).unwrap();
        let expected = format!("{prompt}2+2=4<|im_end|>");
        assert!(prompt.ends_with("assistant\n<think>\n\n</think>\n\n"));
        assert_eq!(codec.tokenizer.decode(&ids).unwrap(), expected);
        let answer = |i: usize| codec.tokenizer.decode(&ids[answers[i].clone()]).unwrap();
        assert_eq!(answer(0), "1+1=2<|im_end|>");
        assert_eq!(answer(1), "2+2=4<|im_end|>");
    }
}
