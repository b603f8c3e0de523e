//! The pure half of polls: checking what a client sends (a poll's settings, its questions, a
//! response) and scoring and counting responses into results and a leaderboard.
//!
//! Indexes are 1-based, as in 100ms: question 1 is the first, option 1 the first of its
//! question.

use serde_json::{Map, Value, json};

use super::{Poll, PollResponse};
use crate::template::FieldError;

pub const SINGLE_CHOICE: &str = "single-choice";
pub const MULTIPLE_CHOICE: &str = "multiple-choice";
pub const SHORT_ANSWER: &str = "short-answer";
pub const LONG_ANSWER: &str = "long-answer";
const QUESTION_TYPES: [&str; 4] = [SINGLE_CHOICE, MULTIPLE_CHOICE, SHORT_ANSWER, LONG_ANSWER];

/// Limits (100ms states none beyond the SDK fetching 50 questions at a time).
pub const MAX_QUESTIONS: usize = 50;
pub const MAX_OPTIONS: usize = 20;
pub const MAX_TEXT: usize = 1024;
pub const MAX_ANSWER_TEXT: usize = 4096;
pub const MAX_TITLE: usize = 256;

/// The settings of a poll a client may set (`poll-info-set`, `POST /v2/polls`), checked and
/// kept as given: `title`, `type`, `duration`, `anonymous`, `visibility`, `locked`, `mode`,
/// `vote` and `responses` (role names), `start`.
pub fn check_info(v: &Value, errors: &mut Vec<FieldError>) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(m) = v.as_object() else {
        errors.push(FieldError::new("poll", "must be an object"));
        return out;
    };
    match m.get("title").and_then(Value::as_str) {
        Some(t) if !t.trim().is_empty() && t.len() <= MAX_TITLE => {
            out.insert("title".into(), json!(t));
        }
        _ => errors.push(FieldError::new("title", format!("1 to {MAX_TITLE} bytes of text"))),
    }
    match m.get("type").and_then(Value::as_str).unwrap_or("poll") {
        t @ ("poll" | "quiz") => {
            out.insert("type".into(), json!(t));
        }
        _ => errors.push(FieldError::new("type", "poll or quiz")),
    }
    for key in ["anonymous", "visibility", "locked"] {
        match m.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => {
                out.insert(key.into(), json!(b));
            }
            Some(_) => errors.push(FieldError::new(key, "must be true or false")),
        }
    }
    match m.get("duration") {
        None | Some(Value::Null) => {}
        Some(d) if d.as_u64().is_some_and(|d| d <= 86_400) => {
            out.insert("duration".into(), d.clone());
        }
        Some(_) => errors.push(FieldError::new("duration", "seconds, 0 to 86400 (0: until stopped)")),
    }
    match m.get("mode") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if ["userid", "peerid", "username"].contains(&s.as_str()) => {
            out.insert("mode".into(), json!(s));
        }
        Some(_) => errors.push(FieldError::new("mode", "userid, peerid or username")),
    }
    match m.get("start") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "auto" || s == "manual" => {
            out.insert("start".into(), json!(s));
        }
        Some(_) => errors.push(FieldError::new("start", "auto or manual")),
    }
    for key in ["vote", "responses"] {
        match m.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a))
                if a.len() <= 100 && a.iter().all(|r| r.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 100)) =>
            {
                out.insert(key.into(), json!(a));
            }
            Some(_) => errors.push(FieldError::new(key, "a list of role names")),
        }
    }
    out
}

/// Checks questions in the SDK's shape (`poll-questions-set`: `[{question: {index?, text,
/// type, skippable, once, weight, duration, answer_min_len, answer_max_len}, options: [{text,
/// weight}], answer: {hidden, option, options, text, case, trim}}]`) and numbers them 1.. in
/// order, their options too.
pub fn check_questions(v: &Value, errors: &mut Vec<FieldError>) -> Vec<Value> {
    let Some(list) = v.as_array() else {
        errors.push(FieldError::new("questions", "must be a list"));
        return Vec::new();
    };
    if list.len() > MAX_QUESTIONS {
        errors.push(FieldError::new("questions", format!("at most {MAX_QUESTIONS}")));
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, q) in list.iter().enumerate() {
        let at = |f: &str| format!("questions[{i}].{f}");
        let body = q.get("question").unwrap_or(q);
        let text = body.get("text").and_then(Value::as_str).unwrap_or_default();
        if text.trim().is_empty() || text.len() > MAX_TEXT {
            errors.push(FieldError::new(at("text"), format!("1 to {MAX_TEXT} bytes of text")));
        }
        let kind = body.get("type").and_then(Value::as_str).unwrap_or_default();
        if !QUESTION_TYPES.contains(&kind) {
            errors.push(FieldError::new(at("type"), QUESTION_TYPES.join(", ")));
            continue;
        }
        let mut question = json!({ "index": i + 1, "text": text, "type": kind });
        for key in ["skippable", "once", "negative"] {
            if let Some(b) = body.get(key).and_then(Value::as_bool) {
                question[key] = json!(b);
            }
        }
        for key in ["weight", "duration", "answer_min_len", "answer_max_len"] {
            match body.get(key) {
                None | Some(Value::Null) => {}
                Some(n) if n.as_u64().is_some_and(|n| n <= 100_000) => question[key] = n.clone(),
                Some(_) => errors.push(FieldError::new(at(key), "a whole number")),
            }
        }
        let choice = kind == SINGLE_CHOICE || kind == MULTIPLE_CHOICE;
        let options: Vec<Value> = q.get("options").and_then(Value::as_array).cloned().unwrap_or_default();
        if choice && !(2..=MAX_OPTIONS).contains(&options.len()) {
            errors.push(FieldError::new(at("options"), format!("2 to {MAX_OPTIONS} options for a {kind} question")));
        }
        let mut opts = Vec::new();
        for (j, o) in options.iter().enumerate().take(if choice { MAX_OPTIONS } else { 0 }) {
            let t = o.get("text").and_then(Value::as_str).unwrap_or_default();
            if t.trim().is_empty() || t.len() > MAX_TEXT {
                errors.push(FieldError::new(
                    format!("questions[{i}].options[{j}].text"),
                    format!("1 to {MAX_TEXT} bytes of text"),
                ));
            }
            let mut opt = json!({ "index": j + 1, "text": t });
            if let Some(w) = o.get("weight").and_then(Value::as_u64) {
                opt["weight"] = json!(w);
            }
            opts.push(opt);
        }
        let mut answer = json!({ "hidden": false });
        if let Some(a) = q.get("answer").filter(|a| a.is_object()) {
            answer["hidden"] = json!(a.get("hidden").and_then(Value::as_bool).unwrap_or(false));
            let in_range = |n: u64| n >= 1 && (n as usize) <= opts.len();
            if kind == SINGLE_CHOICE {
                match a.get("option") {
                    None | Some(Value::Null) => {}
                    Some(n) if n.as_u64().is_some_and(in_range) => answer["option"] = n.clone(),
                    Some(_) => errors.push(FieldError::new(at("answer.option"), "the index of one of its options")),
                }
            }
            if kind == MULTIPLE_CHOICE {
                match a.get("options") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(list)) if list.iter().all(|n| n.as_u64().is_some_and(in_range)) => {
                        let mut l: Vec<u64> = list.iter().filter_map(Value::as_u64).collect();
                        l.sort_unstable();
                        l.dedup();
                        answer["options"] = json!(l);
                    }
                    Some(_) => errors.push(FieldError::new(at("answer.options"), "indexes of its options")),
                }
            }
            if !choice && let Some(t) = a.get("text").and_then(Value::as_str) {
                answer["text"] = json!(t);
                for key in ["case", "trim"] {
                    if let Some(b) = a.get(key).and_then(Value::as_bool) {
                        answer[key] = json!(b);
                    }
                }
            }
        }
        out.push(json!({ "question": question, "options": opts, "answer": answer }));
    }
    out
}

/// What one response says, checked against its question: `{question, type?, skipped?, option?,
/// options?, text?, duration?, update?}`.
pub fn check_response(poll: &Poll, r: &Value) -> Result<(u32, Value), String> {
    let index = r.get("question").and_then(Value::as_u64).ok_or("question must be the question's index")?;
    let q = poll
        .questions
        .get((index as usize).wrapping_sub(1))
        .ok_or_else(|| format!("the poll has no question {index}"))?;
    let kind = q["question"]["type"].as_str().unwrap_or_default();
    let options = q["options"].as_array().map_or(0, Vec::len) as u64;
    let mut out = json!({ "type": kind, "duration": r.get("duration").and_then(Value::as_u64).unwrap_or(0) });
    if r.get("skipped").and_then(Value::as_bool) == Some(true) {
        if q["question"]["skippable"].as_bool() != Some(true) {
            return Err(format!("question {index} may not be skipped"));
        }
        out["skipped"] = json!(true);
        return Ok((index as u32, out));
    }
    match kind {
        SINGLE_CHOICE => {
            let o = r.get("option").and_then(Value::as_u64).filter(|o| (1..=options).contains(o));
            out["option"] = json!(o.ok_or_else(|| format!("question {index} needs option, 1 to {options}"))?);
        }
        MULTIPLE_CHOICE => {
            let list =
                r.get("options").and_then(Value::as_array).ok_or_else(|| format!("question {index} needs options"))?;
            let mut l: Vec<u64> = list.iter().filter_map(Value::as_u64).filter(|o| (1..=options).contains(o)).collect();
            if l.len() != list.len() || l.is_empty() {
                return Err(format!("question {index} needs options, each 1 to {options}"));
            }
            l.sort_unstable();
            l.dedup();
            out["options"] = json!(l);
        }
        _ => {
            let t = r.get("text").and_then(Value::as_str).ok_or_else(|| format!("question {index} needs text"))?;
            if t.len() > MAX_ANSWER_TEXT {
                return Err(format!("an answer is at most {MAX_ANSWER_TEXT} bytes"));
            }
            out["text"] = json!(t);
        }
    }
    Ok((index as u32, out))
}

/// Whether a response answers its question right (`None`: the question has no answer to
/// check against).
pub fn is_correct(poll: &Poll, question: u32, response: &Value) -> Option<bool> {
    let q = poll.questions.get((question as usize).wrapping_sub(1))?;
    let answer = &q["answer"];
    if response["skipped"] == true {
        return answer_exists(answer).then_some(false);
    }
    match q["question"]["type"].as_str()? {
        SINGLE_CHOICE => answer.get("option").map(|a| a == &response["option"]),
        MULTIPLE_CHOICE => answer.get("options").map(|a| a == &response["options"]),
        _ => {
            let want = answer.get("text")?.as_str()?;
            let got = response["text"].as_str().unwrap_or_default();
            let trim = answer["trim"].as_bool().unwrap_or(false);
            let (w, g) = if trim { (want.trim(), got.trim()) } else { (want, got) };
            Some(if answer["case"].as_bool().unwrap_or(false) { w == g } else { w.to_lowercase() == g.to_lowercase() })
        }
    }
}

fn answer_exists(answer: &Value) -> bool {
    answer.get("option").is_some() || answer.get("options").is_some() || answer.get("text").is_some()
}

/// The counts of a poll's responses (`poll-result`, `on-poll-stats`): `{poll_id, max_user,
/// user_count, total_response, questions: [{question, type, options: [votes of option 1, 2,
/// ...], correct, skipped, total}]}`. `max_user` is the most peers who could have voted.
pub fn results(poll: &Poll, responses: &[PollResponse], max_user: usize) -> Value {
    let mut voters: Vec<&str> = responses.iter().map(|r| r.peer_id.as_str()).collect();
    voters.sort_unstable();
    voters.dedup();
    let questions: Vec<Value> = poll
        .questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let index = i as u32 + 1;
            let mine: Vec<&PollResponse> = responses.iter().filter(|r| r.question == index).collect();
            let n_options = q["options"].as_array().map_or(0, Vec::len);
            let mut votes = vec![0u64; n_options];
            for r in &mine {
                let picked = r.body["option"]
                    .as_u64()
                    .into_iter()
                    .chain(r.body["options"].as_array().into_iter().flatten().filter_map(Value::as_u64));
                for o in picked {
                    if let Some(v) = votes.get_mut((o as usize).wrapping_sub(1)) {
                        *v += 1;
                    }
                }
            }
            let correct = mine.iter().filter(|r| is_correct(poll, index, &r.body) == Some(true)).count();
            let skipped = mine.iter().filter(|r| r.body["skipped"] == true).count();
            json!({
                "question": index,
                "type": q["question"]["type"],
                "options": votes,
                "correct": correct,
                "skipped": skipped,
                "total": mine.len(),
            })
        })
        .collect();
    json!({
        "poll_id": poll.id,
        "max_user": max_user.max(voters.len()),
        "user_count": voters.len(),
        "total_response": responses.len(),
        "questions": questions,
    })
}

/// A quiz's leaderboard (`poll-leaderboard`): each voter's score (the weights of the questions
/// answered right, 1 each by default), best first, quicker first on a tie.
pub fn leaderboard(poll: &Poll, responses: &[PollResponse], offset: usize, count: usize) -> Value {
    struct Entry<'a> {
        r: &'a PollResponse,
        score: u64,
        correct: u64,
        total: u64,
        duration: u64,
    }
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for r in responses {
        let right = is_correct(poll, r.question, &r.body) == Some(true);
        let weight = poll
            .questions
            .get((r.question as usize).wrapping_sub(1))
            .and_then(|q| q["question"]["weight"].as_u64())
            .unwrap_or(1);
        let e = match entries.iter_mut().position(|e| e.r.peer_id == r.peer_id) {
            Some(i) => &mut entries[i],
            None => {
                entries.push(Entry { r, score: 0, correct: 0, total: 0, duration: 0 });
                entries.last_mut().expect("just pushed")
            }
        };
        e.total += 1;
        e.duration += r.body["duration"].as_u64().unwrap_or(0);
        if right {
            e.correct += 1;
            e.score += weight;
        }
    }
    entries.sort_by(|a, b| b.score.cmp(&a.score).then(a.duration.cmp(&b.duration)).then(a.r.peer_id.cmp(&b.r.peer_id)));
    let voted = entries.len();
    let correct_users = entries.iter().filter(|e| e.correct > 0).count();
    let avg = |f: fn(&Entry<'_>) -> u64| {
        if voted == 0 { 0.0 } else { entries.iter().map(f).sum::<u64>() as f64 / voted as f64 }
    };
    let page: Vec<Value> = entries
        .iter()
        .enumerate()
        .skip(offset)
        .take(count)
        .map(|(i, e)| {
            json!({
                "position": i + 1,
                "score": e.score,
                "total_responses": e.total,
                "correct_responses": e.correct,
                "duration": e.duration,
                "peer": e.r.peer_info(),
            })
        })
        .collect();
    json!({
        "poll_id": poll.id,
        "total_users": voted,
        "voted_users": voted,
        "correct_users": correct_users,
        "avg_time": avg(|e| e.duration),
        "avg_score": avg(|e| e.score),
        "questions": page,
        "last": offset.saturating_add(count) >= voted,
    })
}
