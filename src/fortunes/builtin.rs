//! The built-in fortunes: the seven of Qt's Threaded Fortune Server example.
//!
//! They are Qt's text, not ours: Copyright (C) 2016 The Qt Company Ltd.,
//! used under the example's BSD-3-Clause licence. They are kept in this file
//! alone so that packaging/debian/copyright can name it.

/// The seven fortunes of Qt's Threaded Fortune Server example, verbatim.
pub const BUILTIN: [&str; 7] = [
    "You've been leading a dog's life. Stay off the furniture.",
    "You've got to think about tomorrow.",
    "You will be surprised by a loud noise.",
    "You will feel hungry again in another hour.",
    "You might have mail.",
    "You cannot kill time without injuring eternity.",
    "Computers are not intelligent. They only think they are.",
];
