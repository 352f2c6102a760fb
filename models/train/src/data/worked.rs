//! Worked solutions in the column methods pupils learn, one short line per
//! step. Every operation is a block: its set-up line (`347+589`), the column
//! steps, right to left, and its result line (`347+589=936`); carries and
//! borrows are written out (`7+9=16, carry 1`, `2-8, borrow: 12-8=4`) and
//! taken back in the next column's step (`4+8+1=13`, `5-2-1=2`). Long
//! multiplication is one row of steps per digit of the bottom number, then
//! the column addition of the partial products; long division is one
//! divide-multiply-subtract step per digit of the dividend, the remainder
//! brought down into the next.
//!
//! The smallest cases are one step, written alone (`7+8=15`).

use serde::{Deserialize, Serialize};

/// The four operations, written `+ - * /` in solutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    pub fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }
}

/// A result: a number, and for division the remainder. Written `182 r 4`
/// (the convention `tah eval` scores), or `182` when the remainder is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub value: u64,
    pub remainder: u64,
}

impl Answer {
    pub fn whole(value: u64) -> Self {
        Answer {
            value,
            remainder: 0,
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.remainder == 0 {
            write!(f, "{}", self.value)
        } else {
            write!(f, "{} r {}", self.value, self.remainder)
        }
    }
}

/// The lines of one operation's working, and its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worked {
    pub lines: Vec<String>,
    pub answer: Answer,
}

/// Digits of `n`, ones first, padded with zeros to `width`.
fn digits(n: u64, width: usize) -> Vec<u64> {
    (0..width).map(|i| (n / 10u64.pow(i as u32)) % 10).collect()
}

fn width(n: u64) -> usize {
    n.to_string().len()
}

/// `a op b` worked out. Subtraction needs `a >= b`, division `b` in 1..=9,
/// multiplication a bottom number of at most two digits.
pub fn work(op: Op, a: u64, b: u64) -> Worked {
    match op {
        Op::Add => addition(a, b),
        Op::Sub => subtraction(a, b),
        Op::Mul => multiplication(a, b),
        Op::Div => division(a, b),
    }
}

/// Set-up line, steps, result line; a single step stands alone.
fn block(op: Op, a: u64, b: u64, steps: Vec<String>, answer: Answer) -> Worked {
    if steps.len() == 1 && op != Op::Div {
        return Worked {
            lines: steps,
            answer,
        };
    }
    let s = op.symbol();
    let mut lines = vec![format!("{a}{s}{b}")];
    lines.extend(steps);
    lines.push(format!("{a}{s}{b}={answer}"));
    Worked { lines, answer }
}

/// Right to left: `7+9=16, carry 1`, `4+8+1=13, carry 1`, `3+5+1=9`.
fn addition(a: u64, b: u64) -> Worked {
    let w = width(a.max(b));
    let (da, db) = (digits(a, w), digits(b, w));
    let mut carry = 0;
    let mut steps = Vec::with_capacity(w);
    for i in 0..w {
        let sum = da[i] + db[i] + carry;
        let mut line = format!("{}+{}", da[i], db[i]);
        if carry > 0 {
            line += &format!("+{carry}");
        }
        line += &format!("={sum}");
        carry = sum / 10;
        if i + 1 < w && carry > 0 {
            line += &format!(", carry {carry}");
        }
        steps.push(line);
    }
    block(Op::Add, a, b, steps, Answer::whole(a + b))
}

/// Right to left, each column's digits first and then, when the top one is
/// too small, the borrow, so the choice is made next to the digits it
/// depends on: `2-8, borrow: 12-8=4`, `3-7-1, borrow: 13-7-1=5`, `5-2-1=2`.
fn subtraction(a: u64, b: u64) -> Worked {
    assert!(a >= b, "{a} - {b} would be negative");
    let w = width(a);
    let (da, db) = (digits(a, w), digits(b, w));
    let mut borrow = 0;
    let mut steps = Vec::with_capacity(w);
    for (&top, &bottom) in da.iter().zip(&db) {
        let need = bottom + borrow;
        let taken = if borrow > 0 { "-1" } else { "" };
        let borrows = top < need;
        steps.push(if borrows {
            let ten_more = top + 10;
            format!(
                "{top}-{bottom}{taken}, borrow: {ten_more}-{bottom}{taken}={}",
                ten_more - need
            )
        } else {
            format!("{top}-{bottom}{taken}={}", top - need)
        });
        borrow = u64::from(borrows);
    }
    block(Op::Sub, a, b, steps, Answer::whole(a - b))
}

/// One row: every digit of `a` times the digit `m`, right to left:
/// `7*4=28, carry 2`, `2*4=8, 8+2=10`.
fn row(a: u64, m: u64) -> Vec<String> {
    let w = width(a);
    let mut carry = 0;
    let mut steps = Vec::with_capacity(w);
    for (i, d) in digits(a, w).into_iter().enumerate() {
        let product = d * m;
        let mut line = format!("{d}*{m}={product}");
        let value = product + carry;
        if carry > 0 {
            line += &format!(", {product}+{carry}={value}");
        }
        carry = value / 10;
        if i + 1 < w && carry > 0 {
            line += &format!(", carry {carry}");
        }
        steps.push(line);
    }
    steps
}

/// The longer number on top. A one-digit bottom number is one row; a
/// two-digit one is a row per digit (`27*4=108`, `27*10=270`), then their
/// column addition.
fn multiplication(a: u64, b: u64) -> Worked {
    let (top, bottom) = if width(b) > width(a) { (b, a) } else { (a, b) };
    assert!(
        bottom < 100,
        "long multiplication by {bottom}: at most two digits"
    );
    let answer = Answer::whole(a * b);
    if bottom < 10 {
        return block(Op::Mul, top, bottom, row(top, bottom), answer);
    }
    let (ones, tens) = (bottom % 10, bottom / 10);
    let mut steps = row(top, ones);
    steps.push(format!("{top}*{ones}={}", top * ones));
    steps.extend(row(top, tens));
    steps.push(format!("{top}*{tens}0={}", top * tens * 10));
    steps.extend(addition(top * ones, top * tens * 10).lines);
    block(Op::Mul, top, bottom, steps, answer)
}

/// Left to right from the first part at least the divisor:
/// `12/7=1, 7*1=7, 12-7=5`, then `57/7=8, ...` with the next digit brought
/// down.
fn division(a: u64, d: u64) -> Worked {
    assert!((1..=9).contains(&d), "long division by {d}: one digit");
    let ds: Vec<u64> = a.to_string().bytes().map(|c| u64::from(c - b'0')).collect();
    let mut current = 0;
    let mut steps = Vec::new();
    for (i, &digit) in ds.iter().enumerate() {
        current = current * 10 + digit;
        if steps.is_empty() && current < d && i + 1 < ds.len() {
            continue;
        }
        let q = current / d;
        let product = q * d;
        steps.push(format!(
            "{current}/{d}={q}, {d}*{q}={product}, {current}-{product}={}",
            current - product
        ));
        current -= product;
    }
    let answer = Answer {
        value: a / d,
        remainder: a % d,
    };
    block(Op::Div, a, d, steps, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(w: &Worked) -> String {
        w.lines.join("\n")
    }

    #[test]
    fn addition_carries() {
        assert_eq!(
            text(&work(Op::Add, 347, 589)),
            "347+589\n7+9=16, carry 1\n4+8+1=13, carry 1\n3+5+1=9\n\
             347+589=936"
        );
        assert_eq!(
            text(&work(Op::Add, 4096, 7)),
            "4096+7\n6+7=13, carry 1\n9+0+1=10, carry 1\n0+0+1=1\n\
             4+0=4\n4096+7=4103"
        );
        assert_eq!(text(&work(Op::Add, 7, 8)), "7+8=15");
        assert_eq!(work(Op::Add, 999, 1).answer, Answer::whole(1000));
    }

    #[test]
    fn subtraction_borrows() {
        assert_eq!(
            text(&work(Op::Sub, 532, 278)),
            "532-278\n2-8, borrow: 12-8=4\n3-7-1, borrow: 13-7-1=5\n5-2-1=2\n\
             532-278=254"
        );
        assert_eq!(
            text(&work(Op::Sub, 1000, 1)),
            "1000-1\n0-1, borrow: 10-1=9\n0-0-1, borrow: 10-0-1=9\n\
             0-0-1, borrow: 10-0-1=9\n1-0-1=0\n1000-1=999"
        );
        assert_eq!(text(&work(Op::Sub, 9, 4)), "9-4=5");
    }

    #[test]
    fn long_multiplication() {
        assert_eq!(
            text(&work(Op::Mul, 27, 14)),
            "27*14\n7*4=28, carry 2\n2*4=8, 8+2=10\n27*4=108\n7*1=7\n\
             2*1=2\n27*10=270\n108+270\n8+0=8\n0+7=7\n1+2=3\n\
             108+270=378\n27*14=378"
        );
        assert_eq!(
            text(&work(Op::Mul, 6, 347)),
            "347*6\n7*6=42, carry 4\n4*6=24, 24+4=28, carry 2\n\
             3*6=18, 18+2=20\n347*6=2082"
        );
        assert_eq!(text(&work(Op::Mul, 7, 4)), "7*4=28");
        for (a, b) in [(99, 99), (10, 10), (5, 90), (123, 7)] {
            assert_eq!(work(Op::Mul, a, b).answer.value, a * b);
        }
    }

    #[test]
    fn long_division() {
        assert_eq!(
            text(&work(Op::Div, 1278, 7)),
            "1278/7\n12/7=1, 7*1=7, 12-7=5\n57/7=8, 7*8=56, 57-56=1\n\
             18/7=2, 7*2=14, 18-14=4\n1278/7=182 r 4"
        );
        assert_eq!(
            text(&work(Op::Div, 5, 7)),
            "5/7\n5/7=0, 7*0=0, 5-0=5\n5/7=0 r 5"
        );
        assert_eq!(work(Op::Div, 1407, 7).answer, Answer::whole(201));
        assert_eq!(work(Op::Div, 1407, 7).answer.to_string(), "201");
        assert_eq!(work(Op::Div, 1278, 7).answer.to_string(), "182 r 4");
    }
}
