//! How pupils ask: several phrasings per operation (symbols, words,
//! commands), some written carelessly, and two-step word problems.

use crate::data::worked::Op;
use crate::rng::Rng;

/// `{a}` and `{b}` are the operands, in the order asked.
const ADD: &[&str] = &[
    "What is {a} + {b}?",
    "What is {a} plus {b}?",
    "{a} + {b}",
    "{a}+{b}",
    "{a} + {b} =",
    "{a} + {b} = ?",
    "Compute {a} + {b}.",
    "Compute {a} plus {b}.",
    "Calculate {a} + {b}.",
    "Add {a} and {b}.",
    "Add {b} to {a}.",
    "What is the sum of {a} and {b}?",
    "How much is {a} plus {b}?",
    "Work out {a} + {b}.",
    "Can you add {a} and {b}?",
];

const SUB: &[&str] = &[
    "What is {a} - {b}?",
    "What is {a} minus {b}?",
    "{a} - {b}",
    "{a}-{b}",
    "{a} - {b} =",
    "{a} - {b} = ?",
    "Compute {a} - {b}.",
    "Compute {a} minus {b}.",
    "Calculate {a} - {b}.",
    "Subtract {b} from {a}.",
    "What is {a} take away {b}?",
    "What is the difference between {a} and {b}?",
    "How much is {a} minus {b}?",
    "Work out {a} - {b}.",
    "Take {b} away from {a}.",
];

const MUL: &[&str] = &[
    "What is {a} * {b}?",
    "What is {a} x {b}?",
    "What is {a} × {b}?",
    "What is {a} times {b}?",
    "{a} * {b}",
    "{a} x {b}",
    "{a} × {b}",
    "{a}*{b}",
    "{a} * {b} =",
    "Compute {a} times {b}.",
    "Compute {a} * {b}.",
    "Calculate {a} x {b}.",
    "Multiply {a} by {b}.",
    "What is the product of {a} and {b}?",
    "What is {a} multiplied by {b}?",
    "How much is {a} times {b}?",
    "Work out {a} × {b}.",
];

const DIV: &[&str] = &[
    "What is {a} / {b}?",
    "What is {a} ÷ {b}?",
    "What is {a} divided by {b}?",
    "{a} / {b}",
    "{a} ÷ {b}",
    "{a}/{b}",
    "{a} ÷ {b} =",
    "Compute {a} / {b}.",
    "Compute {a} divided by {b}.",
    "Calculate {a} ÷ {b}.",
    "Divide {a} by {b}.",
    "How many times does {b} go into {a}?",
    "What is {a} divided by {b}, with remainder?",
    "Work out {a} ÷ {b}.",
    "Share {a} equally into {b} groups.",
];

/// What a later question in a chat may start with.
const FOLLOW_UPS: &[&str] = &[
    "And ",
    "Now ",
    "Next: ",
    "OK, ",
    "Thanks! ",
    "Great. ",
    "Another one: ",
    "Now try this: ",
];

fn fill(template: &str, a: u64, b: u64) -> String {
    template
        .replace("{a}", &a.to_string())
        .replace("{b}", &b.to_string())
}

/// Sometimes lower-case, sometimes without the final `?` or `.`, as typed
/// on a phone.
fn careless(rng: &mut Rng, text: String) -> String {
    let mut text = text;
    if rng.unit() < 0.25 {
        let mut chars = text.chars();
        if let Some(first) = chars.next() {
            text = first.to_lowercase().chain(chars).collect();
        }
    }
    if rng.unit() < 0.2 && (text.ends_with('?') || text.ends_with('.')) {
        text.pop();
    }
    text
}

/// One phrasing of `a op b`.
pub fn question(rng: &mut Rng, op: Op, a: u64, b: u64) -> String {
    let templates = match op {
        Op::Add => ADD,
        Op::Sub => SUB,
        Op::Mul => MUL,
        Op::Div => DIV,
    };
    let template = *rng.pick(templates);
    let text = fill(template, a, b);
    careless(rng, text)
}

/// A later question of a chat: sometimes led in by a follow-up phrase.
pub fn follow_up(rng: &mut Rng, question: &str) -> String {
    if rng.unit() < 0.5 {
        return question.to_string();
    }
    let lead = *rng.pick(FOLLOW_UPS);
    let mut chars = question.chars();
    let rest: String = match chars.next() {
        // "What is ..." -> "And what is ..."; symbols stay as they are.
        Some(c) if c.is_ascii_uppercase() => c.to_lowercase().chain(chars).collect(),
        _ => question.to_string(),
    };
    format!("{lead}{rest}")
}

const NAMES: &[&str] = &[
    "Ann", "Ben", "Cara", "Dan", "Eva", "Sam", "Lily", "Omar", "Mia", "Noah", "Zoe", "Leo",
];
const ITEMS: &[&str] = &[
    "apples", "pens", "cards", "coins", "books", "stickers", "marbles", "sweets", "shells",
    "stamps", "beads", "cookies",
];

/// A two-step word problem: its text and the two operations, the second
/// applied to the first one's result (`None` = that result) and a number.
pub struct WordProblem {
    pub template: usize,
    pub numbers: [u64; 3],
    pub question: String,
    pub steps: [(Op, u64, u64); 2],
}

/// Word problems: (first operation, second operation, text). In the text,
/// `{n}`, `{m}` are two different names, `{i}` the items, `{a} {b} {c}`
/// the numbers; the first step is `a op1 b`, the second `result op2 c`.
const WORD: &[(Op, Op, &str)] = &[
    (Op::Add, Op::Sub, "{n} has {a} {i}. {n} gets {b} more and then gives away {c}. How many {i} does {n} have now?"),
    (Op::Sub, Op::Add, "{n} had {a} {i} and lost {b}. Then {n} found {c} more. How many {i} does {n} have now?"),
    (Op::Add, Op::Add, "{n} has {a} red {i}, {b} blue {i} and {c} green {i}. How many {i} does {n} have in all?"),
    (Op::Sub, Op::Sub, "There were {a} {i} in a box. {n} took {b} and {m} took {c}. How many {i} are left in the box?"),
    (Op::Mul, Op::Add, "{n} buys {a} packs of {i} with {b} in each pack, and already has {c}. How many {i} does {n} have now?"),
    (Op::Mul, Op::Sub, "A shop has {a} boxes of {i} with {b} in each box. It sells {c} {i}. How many {i} are left?"),
    (Op::Add, Op::Mul, "A class has {a} boys and {b} girls. Each child gets {c} {i}. How many {i} are given out?"),
    (Op::Add, Op::Div, "{n} has {a} {i} and gets {b} more. {n} shares them equally among {c} friends. How many {i} does each friend get, and how many are left over?"),
    (Op::Mul, Op::Div, "There are {a} bags with {b} {i} in each. The {i} are shared equally among {c} children. How many does each child get, and how many are left over?"),
    (Op::Sub, Op::Mul, "{n} had {a} coins and spent {b}. {m} has {c} times as many coins as {n} has left. How many coins does {m} have?"),
    (Op::Add, Op::Sub, "A bus has {a} passengers. At the next stop {b} people get on and {c} get off. How many passengers are on the bus now?"),
    (Op::Sub, Op::Add, "A baker made {a} cookies and sold {b}. Then the baker made {c} more. How many cookies does the baker have now?"),
    (Op::Add, Op::Add, "{n} read {a} pages on Monday, {b} pages on Tuesday and {c} pages on Wednesday. How many pages did {n} read in total?"),
    (Op::Sub, Op::Sub, "{n} had {a} coins, spent {b} coins on a book and {c} coins on lunch. How many coins does {n} have left?"),
    (Op::Mul, Op::Add, "There are {a} rows of chairs with {b} chairs in each row, and {c} more chairs at the back. How many chairs are there altogether?"),
    (Op::Mul, Op::Sub, "{n} has {a} bags of {i} with {b} in each bag and gives {c} {i} to {m}. How many {i} does {n} have left?"),
    (Op::Add, Op::Mul, "{n} saves {a} coins in May and {b} coins in June. {m} saves {c} times as much as {n}. How many coins does {m} save?"),
    (Op::Add, Op::Div, "A teacher has {a} red pencils and {b} blue pencils and puts them into {c} equal groups. How many pencils are in each group, and how many are left over?"),
    (Op::Mul, Op::Div, "{n} has {a} boxes with {b} {i} in each box and makes {c} equal piles of them. How many {i} are in each pile, and how many are left over?"),
    (Op::Sub, Op::Mul, "A farmer had {a} eggs and {b} of them broke. The farmer sells the rest for {c} coins each. How many coins does the farmer get?"),
    (Op::Sub, Op::Div, "{n} had {a} {i} and gave {b} away. {n} shares the rest equally among {c} friends. How many {i} does each friend get, and how many are left over?"),
];

/// Numbers for `template` such that every step is in the curriculum:
/// subtractions stay non-negative, products at most 2 by 2 digits,
/// divisors one digit.
fn word_numbers(rng: &mut Rng, first: Op, second: Op) -> [u64; 3] {
    loop {
        // A product's top number has at most two digits; half of the other
        // problems draw the same small numbers, so their size never tells
        // which operations the text asks for (with small numbers only in
        // add-then-multiply problems, a model learns "small: multiply").
        let small = second == Op::Mul || rng.unit() < 0.5;
        let (a, b) = match first {
            Op::Add if small => (rng.range(2, 60), rng.range(2, 39)),
            Op::Add => (rng.range(2, 999), rng.range(2, 999)),
            Op::Sub if small => {
                let a = rng.range(10, 150);
                (a, rng.range(a.saturating_sub(99).max(1), a - 1))
            }
            Op::Sub => {
                let a = rng.range(10, 999);
                (a, rng.range(1, a - 1))
            }
            Op::Mul => (rng.range(2, 30), rng.range(2, 25)),
            Op::Div => unreachable!("no word problem starts with a division"),
        };
        let r = match first {
            Op::Add => a + b,
            Op::Sub => a - b,
            _ => a * b,
        };
        let c = match second {
            Op::Add if small => rng.range(2, 60),
            Op::Add => rng.range(2, 999),
            Op::Sub if r < 2 => continue,
            Op::Sub => rng.range(1, r - 1),
            Op::Mul if r >= 100 => continue,
            Op::Mul => rng.range(2, 12),
            Op::Div => rng.range(2, 9),
        };
        return [a, b, c];
    }
}

pub fn word_problem(rng: &mut Rng) -> WordProblem {
    let template = rng.range(0, WORD.len() as u64 - 1) as usize;
    let (first, second, text) = WORD[template];
    let numbers = word_numbers(rng, first, second);
    let [a, b, c] = numbers;
    let n = *rng.pick(NAMES);
    let m = loop {
        let m = *rng.pick(NAMES);
        if m != n {
            break m;
        }
    };
    let items = *rng.pick(ITEMS);
    let question = text
        .replace("{n}", n)
        .replace("{m}", m)
        .replace("{i}", items)
        .replace("{a}", &a.to_string())
        .replace("{b}", &b.to_string())
        .replace("{c}", &c.to_string());
    let r = match first {
        Op::Add => a + b,
        Op::Sub => a - b,
        _ => a * b,
    };
    WordProblem {
        template,
        numbers,
        question,
        steps: [(first, a, b), (second, r, c)],
    }
}
