//! `corral cat UNIT...`: the files that define each unit.

use std::path::PathBuf;

use crate::ipc::proto::{Request, Response};

use super::common::{VerbError, call, code_of, out, outln};
use super::{exit, jobs};

/// Runs `corral cat`.
pub fn run(socket: Option<PathBuf>, units: Vec<String>) -> Result<u8, VerbError> {
    jobs::need_units("cat", &units)?;
    let Response::Files(list) = call(socket, &Request::Cat { units })? else {
        return Err(VerbError::Unexpected {
            verb: "cat",
            got: "not a file list".into(),
        });
    };
    let mut code = exit::OK;
    let mut first = true;
    for u in list {
        match u.files {
            Ok(files) => {
                for f in files {
                    if !first {
                        outln(format_args!(""))?;
                    }
                    first = false;
                    outln(format_args!("# {}", f.path))?;
                    out(format_args!("{}", f.text))?;
                    if !f.text.ends_with('\n') {
                        outln(format_args!(""))?;
                    }
                }
            }
            Err(f) => {
                eprintln!("{}", f.message);
                code = code.max(code_of(&f));
            }
        }
    }
    Ok(code)
}
