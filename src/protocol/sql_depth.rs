//! A bound on how deeply SQL text can nest, checked on its tokens before anything parses it.
//!
//! DataFusion and sqlparser build, clone, hash, compare and drop expression trees recursively, so a 4 KB query such
//! as `SELECT 1+1+…+1` with 2 000 terms (or `WHERE a = 1 OR a = 2 OR …`) nests 2 000 levels deep and overflows a
//! thread's stack inside code no caller can protect. [`check`] refuses such text with INVALID_ARGUMENT before it
//! is parsed. The estimate walks the flat token list (no recursion, linear time) and never underestimates:
//!
//! - every `(`, `[`, `{` and `CASE` opens a level, closed by its partner or `END`;
//! - inside a level, every operator (`+`, `=`, `::`, `AND`, `NOT`, `IN`, `LIKE`, …) since the last `,` or clause
//!   keyword (`SELECT`, `WHERE`, `WHEN`, `THEN`, …) adds one: a chain of n operators is a tree n deep;
//! - set operations (`UNION`, …), `JOIN`s and the commas of a `FROM` or `WITH` list add one each for the whole
//!   level, as they nest plans rather than expressions (a CTE may read the one before it).
//!
//! Long `IN (…)` lists, wide `SELECT` lists and many `VALUES` rows stay shallow and pass; what is refused is a
//! single chain of more than [`MAX_SQL_DEPTH`] operators, which a client can always write as `IN (…)` or split.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, Result};

/// The deepest nesting [`check`] lets through. Requests are planned and run on threads whose stacks are sized
/// for several times this depth (see `service::compute`).
pub const MAX_SQL_DEPTH: usize = 1000;

/// INVALID_ARGUMENT when `sql` may nest deeper than [`MAX_SQL_DEPTH`]; `what` names the text in the message
/// (`query`, `predicate`). Text that does not tokenize passes: the parser reports it properly.
pub fn check(what: &str, sql: &str) -> Result<()> {
    let depth = estimate(sql);
    if depth > MAX_SQL_DEPTH {
        return Err(Error::invalid(format!(
            "flightbay: the {what} nests about {depth} levels deep (the limit is {MAX_SQL_DEPTH}): write long OR \
             chains as IN (…), or split the expression"
        )));
    }
    Ok(())
}

/// One open level: operators since the last separator, and plan-nesting operators of the whole level.
#[derive(Default)]
struct Level {
    operators: usize,
    plans: usize,
    in_from: bool,
}

/// An upper bound of the expression and plan nesting depth of `sql` (0 when it does not tokenize).
pub fn estimate(sql: &str) -> usize {
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return 0;
    };
    let mut levels = vec![Level::default()];
    // Σ over open levels of (1 + operators + plans), kept up to date instead of summed at every token.
    let mut depth = 1usize;
    let mut deepest = depth;
    for token in &tokens {
        let top = levels.len() - 1;
        match classify(token) {
            Kind::Neutral => {}
            Kind::Open => {
                levels.push(Level::default());
                depth += 1;
            }
            Kind::Close => {
                if levels.len() > 1
                    && let Some(level) = levels.pop()
                {
                    depth -= 1 + level.operators + level.plans;
                }
            }
            Kind::Operator => {
                levels[top].operators += 1;
                depth += 1;
            }
            Kind::Separator => {
                let level = &mut levels[top];
                if level.in_from {
                    level.plans += 1;
                    depth += 1;
                }
                depth -= level.operators;
                level.operators = 0;
            }
            Kind::Clause { list } => {
                let level = &mut levels[top];
                depth -= level.operators;
                level.operators = 0;
                if let Some(list) = list {
                    level.in_from = list;
                }
            }
            Kind::Plan => {
                let level = &mut levels[top];
                level.plans += 1;
                depth += 1;
            }
        }
        deepest = deepest.max(depth);
    }
    deepest
}

enum Kind {
    /// Identifiers, literals, whitespace, `.`.
    Neutral,
    /// `(`, `[`, `{`, `CASE`.
    Open,
    /// `)`, `]`, `}`, `END`.
    Close,
    /// Anything that joins two expressions or wraps one.
    Operator,
    /// `,`: starts a sibling expression (and, in `FROM`, another joined table).
    Separator,
    /// A keyword that starts a new clause or branch: `list` is `Some(true)` when it starts a list whose commas nest
    /// plans (`FROM`, `WITH`), `Some(false)` when it ends one, `None` when it does neither (`AS`, `ON`, `WHEN`…).
    Clause { list: Option<bool> },
    /// `UNION`, `INTERSECT`, `EXCEPT`, `JOIN`: nests plans.
    Plan,
}

fn classify(token: &Token) -> Kind {
    match token {
        Token::Word(w) if w.quote_style.is_some() => Kind::Neutral,
        Token::Word(w) => match w.keyword {
            Keyword::CASE => Kind::Open,
            Keyword::END => Kind::Close,
            Keyword::FROM | Keyword::WITH => Kind::Clause { list: Some(true) },
            Keyword::AS | Keyword::ON | Keyword::USING | Keyword::WHEN | Keyword::THEN | Keyword::ELSE => {
                Kind::Clause { list: None }
            }
            Keyword::SELECT
            | Keyword::WHERE
            | Keyword::GROUP
            | Keyword::BY
            | Keyword::HAVING
            | Keyword::ORDER
            | Keyword::LIMIT
            | Keyword::OFFSET
            | Keyword::VALUES
            | Keyword::QUALIFY
            | Keyword::WINDOW
            | Keyword::PARTITION => Kind::Clause { list: Some(false) },
            Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::MINUS | Keyword::JOIN => Kind::Plan,
            Keyword::AND
            | Keyword::OR
            | Keyword::XOR
            | Keyword::NOT
            | Keyword::IS
            | Keyword::IN
            | Keyword::LIKE
            | Keyword::ILIKE
            | Keyword::SIMILAR
            | Keyword::BETWEEN
            | Keyword::DIV
            | Keyword::MOD
            | Keyword::COLLATE
            | Keyword::AT
            | Keyword::OVERLAPS
            | Keyword::REGEXP
            | Keyword::RLIKE
            | Keyword::ESCAPE
            | Keyword::ANY
            | Keyword::SOME
            | Keyword::ALL
            | Keyword::EXISTS
            | Keyword::INTERVAL
            | Keyword::CAST
            | Keyword::TRY_CAST => Kind::Operator,
            _ => Kind::Neutral,
        },
        Token::LParen | Token::LBracket | Token::LBrace => Kind::Open,
        Token::RParen | Token::RBracket | Token::RBrace => Kind::Close,
        Token::Comma => Kind::Separator,
        Token::EOF
        | Token::Whitespace(_)
        | Token::Period
        | Token::SemiColon
        | Token::Number(..)
        | Token::Char(_)
        | Token::Placeholder(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_) => Kind::Neutral,
        _ => Kind::Operator,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(term: &str, sep: &str, n: usize) -> String {
        vec![term; n].join(sep)
    }

    #[test]
    fn chains_are_as_deep_as_they_are_long() {
        assert!(estimate(&format!("SELECT {}", chain("1", "+", 2000))) >= 1999);
        assert!(estimate(&format!("SELECT * FROM t WHERE {}", chain("id = 1", " OR ", 2000))) >= 2000);
        assert!(estimate(&format!("SELECT {}", chain("1", " UNION SELECT ", 2000))) >= 1999);
        assert!(estimate(&format!("SELECT * FROM {}", chain("t", ", ", 2000))) >= 1999);
        assert!(estimate(&format!("SELECT * FROM {}", chain("t AS x", ", ", 2000))) >= 1999);
        let ctes = (1..2000)
            .map(|i| format!("c{i} AS (SELECT * FROM c{})", i - 1))
            .collect::<Vec<_>>();
        assert!(
            estimate(&format!(
                "WITH c0 AS (SELECT 1), {} SELECT * FROM c1999",
                ctes.join(", ")
            )) >= 1999
        );
        assert!(estimate(&format!("SELECT * FROM t{}", " JOIN t USING (id)".repeat(2000))) >= 2000);
        assert!(estimate(&format!("SELECT 1{}", "::int".repeat(2000))) >= 2000);
        assert!(estimate(&format!("{}1{}", "(".repeat(3000), ")".repeat(3000))) >= 3000);
        let case = format!("SELECT {}1{}", "CASE WHEN true THEN ".repeat(2000), " END".repeat(2000));
        assert!(estimate(&case) >= 2000);
        assert!(check("query", &format!("SELECT {}", chain("1", "+", 2000))).is_err());
    }

    #[test]
    fn wide_queries_are_shallow() {
        let list = (0..20_000).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        assert!(estimate(&format!("SELECT * FROM t WHERE id IN ({list})")) < 10);
        let values = (0..5000)
            .map(|i| format!("(-{i}, 'x{i}')"))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(estimate(&format!("SELECT * FROM (VALUES {values}) AS v(a, b)")) < 10);
        let columns = (0..2000)
            .map(|i| format!("a + {i} AS c{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(estimate(&format!("SELECT {columns} FROM t")) < 10);
        let ands = chain("a IS NOT NULL", " AND ", 200);
        check("query", &format!("SELECT * FROM t WHERE {ands}")).unwrap();
        check("query", &format!("SELECT {}", chain("1", "+", 900))).unwrap();
        assert_eq!(estimate("SELECT 'unterminated"), 0);
    }
}
