"""Real data sets that need no network (behind :mod:`sk_maskid.datasets`).

:func:`load_stdlib_text`, a categorical corpus read at run time from the
docstrings of Python's standard library, and small public-domain time series
shipped as CSV files in ``sk_maskid/data``: :func:`load_sunspots`,
:func:`load_nile`, :func:`load_us_macro`.
"""

import csv
import importlib
import inspect
import sys
import warnings
from importlib import resources

import numpy as np
from sklearn.utils import Bunch

from ._validation import check_positive_int

# ---------------------------------------------------------------------------
# A real categorical corpus: the docstrings of Python's standard library

#: Default modules of :func:`load_stdlib_text`: pure-Python standard-library modules
#: present on every supported Python (3.10 to 3.13), in the order they are read.
STDLIB_TEXT_MODULES = (
    "argparse",
    "calendar",
    "collections",
    "configparser",
    "contextlib",
    "csv",
    "dataclasses",
    "difflib",
    "doctest",
    "email.message",
    "fractions",
    "ftplib",
    "heapq",
    "http.server",
    "imaplib",
    "inspect",
    "ipaddress",
    "json",
    "logging",
    "optparse",
    "pathlib",
    "pprint",
    "queue",
    "random",
    "shutil",
    "smtplib",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "traceback",
    "unittest",
    "urllib.parse",
    "zipfile",
)

#: The 28 symbols of :func:`load_stdlib_text`: symbol ``i`` is
#: ``STDLIB_TEXT_ALPHABET[i]``; ``"#"`` stands for every character that is not an
#: ASCII letter or a space.
STDLIB_TEXT_ALPHABET = (*"abcdefghijklmnopqrstuvwxyz", " ", "#")

_SPACE = 26
_OTHER = 27
_ASCII_CODES = np.full(128, _OTHER, dtype=np.intp)
_ASCII_CODES[ord("a") : ord("z") + 1] = np.arange(26)
_ASCII_CODES[ord("A") : ord("Z") + 1] = np.arange(26)
_ASCII_CODES[ord(" ")] = _SPACE


def _normalise_text(text):
    """Collapse every run of whitespace to one space and strip both ends."""
    return " ".join(text.split())


def _encode_text(text):
    """Symbols (0..27) of ``text`` after whitespace normalisation, as np.intp."""
    text = _normalise_text(text)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    out = np.full(codes.shape, _OTHER, dtype=np.intp)
    is_ascii = codes < 128
    out[is_ascii] = _ASCII_CODES[codes[is_ascii]]
    return out


def _decode_text(seq):
    """The string of a sequence of symbols 0..27 (a 1-D array or an (n, 1) column)."""
    arr = np.asarray(seq)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D sequence of symbols, got shape {arr.shape}")
    if arr.size == 0:
        return ""
    if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > 27:
        raise ValueError("symbols must be integers in 0..27")
    return "".join(np.asarray(STDLIB_TEXT_ALPHABET)[arr])


def _public_names(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name in vars(module) if not name.startswith("_")]
    return sorted(set(names))


def _module_docstrings(module):
    """``(qualified name, docstring)`` of a module, its public functions and classes
    (defined in the module or its submodules) and their methods and properties, in a
    deterministic order: the module first, then names sorted alphabetically, a class
    before its members. Each object is read once."""
    prefix = module.__name__
    seen = set()
    out = []

    def add(name, obj):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str):
            out.append((name, doc))

    def walk_class(qualname, cls, depth):
        add(qualname, cls)
        namespace = vars(cls)
        for name in sorted(namespace):
            if name.startswith("_") and not (
                name.startswith("__") and name.endswith("__")
            ):
                continue
            attr = namespace[name]
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            if isinstance(attr, property) or inspect.isfunction(attr):
                add(f"{qualname}.{name}", attr)
            elif (
                inspect.isclass(attr)
                and depth == 0
                and attr.__module__ == cls.__module__
                and attr.__name__ == name
            ):
                walk_class(f"{qualname}.{name}", attr, depth + 1)

    add(prefix, module)
    for name in _public_names(module):
        obj = getattr(module, name, None)
        owner = getattr(obj, "__module__", None)
        if not isinstance(owner, str) or not (
            owner == prefix or owner.startswith(prefix + ".")
        ):
            continue
        if inspect.isclass(obj):
            walk_class(f"{prefix}.{name}", obj, 0)
        elif inspect.isfunction(obj):
            add(f"{prefix}.{name}", obj)
    return out


def load_stdlib_text(modules=None, *, min_length=20, return_X_lengths=False):
    """Characters of docstrings of Python's standard library: a categorical corpus.

    A real, offline corpus for categorical HMMs: the docstrings of a fixed list of
    pure-Python standard-library modules (:data:`STDLIB_TEXT_MODULES`), read at run
    time from the interpreter that runs this function, one sequence per docstring.

    Each module is imported and walked with :mod:`inspect` in a deterministic order:
    the module's docstring, then its public names (``__all__`` if defined, else the
    names without a leading underscore) sorted alphabetically, keeping the functions
    and classes defined in the module or its submodules; for a class, its docstring,
    then those of its public and dunder methods and properties (and of its nested
    classes, one level deep), sorted by name. Each object is read once; only
    Python-level functions are read (the docstrings of C builtins are not).

    A docstring is normalised (every run of whitespace collapsed to one space, both ends
    stripped) and encoded on a 28-symbol alphabet (:data:`STDLIB_TEXT_ALPHABET`):
    ASCII letters ``a``..``z`` (either case) are 0..25, the space is 26, and every other
    character (digits, punctuation, non-ASCII letters) is 27, shown as ``"#"``. One
    token per character. Docstrings shorter than ``min_length`` tokens are dropped, and
    so is a docstring identical to one already read.

    .. note::
       The corpus depends on the Python version, since docstrings change between
       releases (and it is empty under ``python -OO``, which strips them; an error is
       raised then). With the default modules, Python 3.11.7 gives
       1226 sequences, 344162 tokens in all (median length 136). Compare results across
       Python versions only with this in mind.

    Parameters
    ----------
    modules : sequence of str, default=None
        Names of the modules to read, in order; ``None`` means
        :data:`STDLIB_TEXT_MODULES`. Any importable module works (a string is one
        module).
    min_length : int, default=20
        Docstrings with fewer tokens (after normalisation) are dropped.
    return_X_lengths : bool, default=False
        If True, return hmmlearn's form ``(X, lengths)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With attributes:

        ``sequences`` : list of ndarray of np.intp
            One 1-D array of symbols in 0..27 per docstring.
        ``groups`` : ndarray of shape (n_sequences,), np.intp
            Index in ``module_names`` of the module each sequence comes from: pass
            it to :class:`~sklearn.model_selection.GroupKFold` so that training and
            test sequences come from different modules.
        ``module_names`` : list of str
            The modules read, in order.
        ``names`` : list of str
            Qualified name of the object of each docstring (e.g.
            ``"textwrap.TextWrapper.wrap"``).
        ``alphabet`` : list of str
            The 28 symbols, ``alphabet[i]`` for symbol ``i``.
        ``decode`` : callable
            ``decode(seq) -> str``: the text of a sequence of symbols.
        ``encode`` : callable
            ``encode(text) -> ndarray``: the symbols of any text, normalised as
            above.
        ``n_tokens`` : int
            Total number of tokens.
        ``DESCR`` : str
            Description of the corpus.
    (X, lengths) : tuple of ndarray
        If ``return_X_lengths``: ``X`` of shape (n_tokens, 1), np.intp, the
        sequences concatenated in order, and ``lengths`` of shape (n_sequences,).

    Examples
    --------
    >>> from sk_maskid.datasets import load_stdlib_text
    >>> corpus = load_stdlib_text(["textwrap"])
    >>> corpus.decode(corpus.sequences[0][:25])
    'text wrapping and filling'
    """
    if modules is None:
        modules = STDLIB_TEXT_MODULES
    elif isinstance(modules, str):
        modules = (modules,)
    module_names = [str(name) for name in modules]
    if not module_names:
        raise ValueError("modules must name at least one module")
    if len(set(module_names)) != len(module_names):
        raise ValueError(f"modules contains duplicates: {module_names}")
    min_length = check_positive_int(min_length, "min_length")

    sequences, groups, names, seen_texts = [], [], [], set()
    with warnings.catch_warnings():
        # Reading a deprecated name must neither warn nor fail.
        warnings.simplefilter("ignore")
        for group, module_name in enumerate(module_names):
            module = importlib.import_module(module_name)
            for name, doc in _module_docstrings(module):
                text = _normalise_text(doc)
                if len(text) < min_length or text in seen_texts:
                    continue
                seen_texts.add(text)
                sequences.append(_encode_text(text))
                groups.append(group)
                names.append(name)
    if not sequences:
        raise ValueError(
            f"no docstring of at least {min_length} characters in {module_names} "
            "(docstrings are stripped under python -OO)"
        )
    lengths = np.array([len(seq) for seq in sequences], dtype=np.intp)
    if return_X_lengths:
        return np.concatenate(sequences)[:, np.newaxis], lengths
    version = ".".join(map(str, sys.version_info[:3]))
    descr = (
        "Docstrings of Python's standard library, as characters\n"
        "------------------------------------------------------\n\n"
        f"Read at run time from Python {version}: {len(sequences)} docstrings of "
        f"{len(module_names)} modules, {int(lengths.sum())} tokens (min length "
        f"{min_length}, median {int(np.median(lengths))}, max {int(lengths.max())}).\n"
        "Alphabet of 28 symbols: a-z (ASCII letters, either case) -> 0..25, space "
        "(any whitespace run) -> 26, any other character -> 27 ('#').\n"
        "The corpus depends on the Python version (docstrings change between "
        "releases).\nLicence: the Python Software Foundation License (the docstrings "
        "are part of Python's source);\nnothing is stored in sk_maskid.\n"
    )
    return Bunch(
        sequences=sequences,
        groups=np.array(groups, dtype=np.intp),
        module_names=module_names,
        names=names,
        alphabet=list(STDLIB_TEXT_ALPHABET),
        decode=_decode_text,
        encode=_encode_text,
        n_tokens=int(lengths.sum()),
        DESCR=descr,
    )


# ---------------------------------------------------------------------------
# Real time series, shipped as CSV files in sk_maskid/data

_STATSMODELS_NOTE = (
    "Extracted once, values unchanged, from the data sets bundled with statsmodels "
    "0.15.0, whose COPYRIGHT text says public domain; statsmodels is not needed."
)


def _read_csv(filename):
    """Header and float values of a CSV file in ``sk_maskid/data``.

    Lines starting with ``#`` (source and licence) are skipped; the first other line
    is the header.
    """
    text = (resources.files("sk_maskid.data") / filename).read_text(encoding="ascii")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    header, *rows = csv.reader(lines)
    values = np.asarray(rows, dtype=str).astype(np.float64)
    if values.shape != (len(rows), len(header)):  # pragma: no cover - corrupted file
        raise ValueError(f"{filename}: ragged rows")
    return header, values


def _check_as_frame(as_frame):
    if not isinstance(as_frame, (bool, np.bool_)):
        raise TypeError(f"as_frame must be a bool, got {as_frame!r}")
    return bool(as_frame)


def _series_bunch(data, time, feature_names, descr, filename, as_frame, index):
    """The Bunch of a series loader; with ``as_frame``, ``data`` and ``frame`` are a
    pandas DataFrame indexed by ``index()`` (a callable taking the pandas module)."""
    bunch = Bunch(
        data=data,
        time=time,
        feature_names=list(feature_names),
        DESCR=descr,
        filename=filename,
    )
    if as_frame:
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "as_frame=True requires pandas, which is not installed "
                "(pip install pandas); pandas is not a dependency of sk_maskid"
            ) from exc
        frame = pd.DataFrame(data, columns=list(feature_names), index=index(pd))
        bunch.data = frame
        bunch.frame = frame
    return bunch


def load_sunspots(*, as_frame=False):
    """Yearly mean sunspot numbers, 1700-2008 (309 years, one feature).

    The classic Wolf (Zurich) yearly sunspot series, "version 1", i.e. before the
    2015 recalibration by SILSO (so 1700 is 5.0, not 8.3). A quasi-periodic
    (about 11-year) non-negative series, a textbook test case for HMM regimes
    (rising/falling, high/low activity).

    Source: National Geophysical Data Center (NOAA),
    http://www.ngdc.noaa.gov/stp/solar/solarda3.html, as bundled with statsmodels
    (``statsmodels.datasets.sunspots``). Licence: public domain. Shipped as
    ``sk_maskid/data/sunspots.csv``; no network access.

    Parameters
    ----------
    as_frame : bool, default=False
        If True, ``data`` (and ``frame``) is a pandas DataFrame indexed by year.
        Requires pandas (not a dependency of sk_maskid): an ImportError naming
        pandas is raised without it.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` : ndarray of shape (309, 1), float64
            The sunspot number of each year.
        ``time`` : ndarray of shape (309,), int64
            The years, 1700..2008.
        ``feature_names`` : list of str
            ``["sunactivity"]``.
        ``DESCR`` : str
            Description: source, licence, units.
        ``filename`` : str
            Name of the CSV file in ``sk_maskid/data``.
        ``frame`` : DataFrame
            Only with ``as_frame=True``; the same object as ``data``.

    Examples
    --------
    >>> from sk_maskid.datasets import load_sunspots
    >>> sunspots = load_sunspots()
    >>> sunspots.data.shape, int(sunspots.time[0]), float(sunspots.data[0, 0])
    ((309, 1), 1700, 5.0)
    """
    as_frame = _check_as_frame(as_frame)
    _, values = _read_csv("sunspots.csv")
    years = values[:, 0].astype(np.int64)
    descr = (
        "Yearly mean sunspot numbers, 1700-2008\n"
        "--------------------------------------\n\n"
        "309 yearly values of the Wolf (Zurich) sunspot number, version 1 (before "
        "the 2015 SILSO recalibration).\n"
        "Source: National Geophysical Data Center (NOAA), "
        "http://www.ngdc.noaa.gov/stp/solar/solarda3.html\n"
        "Licence: public domain.\n" + _STATSMODELS_NOTE + "\n"
    )
    return _series_bunch(
        values[:, 1:],
        years,
        ["sunactivity"],
        descr,
        "sunspots.csv",
        as_frame,
        lambda pd: pd.Index(years, name="year"),
    )


def load_nile(*, as_frame=False):
    """Annual flow of the Nile at Aswan, 1871-1970 (100 years, one feature).

    The volume of water that passed Aswan each year, in 10^8 cubic metres; the flow
    drops after about 1898 (the start of the Aswan dam works), the classic
    change-point example, so a 2-state HMM should find the two regimes.

    Source: Cobb, G. W. (1978), "The Problem of the Nile: Conditional Solution to a
    Changepoint Problem", *Biometrika* 65(2), 243-251, as bundled with statsmodels
    (``statsmodels.datasets.nile``). Licence: public domain. Shipped as
    ``sk_maskid/data/nile.csv``; no network access.

    Parameters
    ----------
    as_frame : bool, default=False
        If True, ``data`` (and ``frame``) is a pandas DataFrame indexed by year.
        Requires pandas (not a dependency of sk_maskid): an ImportError naming
        pandas is raised without it.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` : ndarray of shape (100, 1), float64
            The annual flow, 10^8 m^3.
        ``time`` : ndarray of shape (100,), int64
            The years, 1871..1970.
        ``feature_names`` : list of str
            ``["volume"]``.
        ``DESCR`` : str
            Description: source, licence, units.
        ``filename`` : str
            Name of the CSV file in ``sk_maskid/data``.
        ``frame`` : DataFrame
            Only with ``as_frame=True``; the same object as ``data``.

    Examples
    --------
    >>> from sk_maskid.datasets import load_nile
    >>> nile = load_nile()
    >>> nile.data.shape, int(nile.time[0]), float(nile.data[0, 0])
    ((100, 1), 1871, 1120.0)
    """
    as_frame = _check_as_frame(as_frame)
    _, values = _read_csv("nile.csv")
    years = values[:, 0].astype(np.int64)
    descr = (
        "Annual flow of the Nile at Aswan, 1871-1970\n"
        "-------------------------------------------\n\n"
        "100 yearly volumes, in 10^8 m^3; a change point near 1898.\n"
        "Source: Cobb, G. W. (1978), The Problem of the Nile: Conditional Solution "
        "to a Changepoint Problem, Biometrika 65(2), 243-251.\n"
        "Licence: public domain.\n" + _STATSMODELS_NOTE + "\n"
    )
    return _series_bunch(
        values[:, 1:],
        years,
        ["volume"],
        descr,
        "nile.csv",
        as_frame,
        lambda pd: pd.Index(years, name="year"),
    )


def load_us_macro(*, as_frame=False):
    """US quarterly real GDP growth and CPI inflation, 1959Q2-2009Q3 (202 x 2).

    Two features per quarter, both quarter-on-quarter log growth rates in percent
    (not annualised; multiply by 4 for annual rates): ``gdp_growth`` is
    ``100 * (log(realgdp[t]) - log(realgdp[t-1]))`` of real gross domestic product
    (billions of chained 2005 US dollars, seasonally adjusted), as in Hamilton's (1989)
    regime-switching model of US output, and ``inflation`` the same of the
    end-of-quarter consumer price index (all urban consumers, all items, seasonally
    adjusted). Recessions (1974-75, 1980-82, 2008-09) and the high-inflation 1970s
    are the regimes a Gaussian HMM finds.

    The levels (1959Q1-2009Q3, 203 quarters) are shipped as
    ``sk_maskid/data/us_macro.csv``, four columns (``year``, ``quarter``,
    ``realgdp``, ``cpi``) of statsmodels' ``macrodata``. Source: FRED, Federal
    Reserve Economic Data, Federal Reserve Bank of St. Louis (accessed 2009-12-15),
    compiled by Skipper Seabold for statsmodels (``statsmodels.datasets.macrodata``).
    Licence: public domain. No network access.

    Parameters
    ----------
    as_frame : bool, default=False
        If True, ``data`` (and ``frame``) is a pandas DataFrame indexed by quarter
        (a ``PeriodIndex``). Requires pandas (not a dependency of sk_maskid): an
        ImportError naming pandas is raised without it.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` : ndarray of shape (202, 2), float64
            Growth rates in percent per quarter.
        ``time`` : ndarray of shape (202,), float64
            Fractional years, ``year + (quarter - 1) / 4``: 1959.25..2009.5.
        ``time_labels`` : list of str
            Quarter labels, from ``"1959Q2"`` to ``"2009Q3"``.
        ``feature_names`` : list of str
            ``["gdp_growth", "inflation"]``.
        ``DESCR`` : str
            Description: source, licence, units.
        ``filename`` : str
            Name of the CSV file in ``sk_maskid/data``.
        ``frame`` : DataFrame
            Only with ``as_frame=True``; the same object as ``data``.

    Examples
    --------
    >>> from sk_maskid.datasets import load_us_macro
    >>> macro = load_us_macro()
    >>> macro.data.shape, macro.time_labels[0], macro.time_labels[-1]
    ((202, 2), '1959Q2', '2009Q3')
    """
    as_frame = _check_as_frame(as_frame)
    _, values = _read_csv("us_macro.csv")
    year = values[1:, 0].astype(np.int64)
    quarter = values[1:, 1].astype(np.int64)
    growth = 100.0 * np.diff(np.log(values[:, 2:4]), axis=0)
    labels = [f"{y}Q{q}" for y, q in zip(year, quarter, strict=True)]
    descr = (
        "US quarterly real GDP growth and CPI inflation, 1959Q2-2009Q3\n"
        "-------------------------------------------------------------\n\n"
        "202 quarters x 2 features: 100 * diff(log(level)) of real GDP (billions of "
        "chained 2005 US$, SAAR) and of the end-of-quarter CPI (all urban consumers, "
        "1982-84 = 100, SA), in percent per quarter (not annualised).\n"
        "Source: FRED, Federal Reserve Bank of St. Louis (accessed 2009-12-15), "
        "compiled by Skipper Seabold (statsmodels.datasets.macrodata).\n"
        "Licence: public domain.\n" + _STATSMODELS_NOTE + "\n"
    )
    bunch = _series_bunch(
        growth,
        year + (quarter - 1) / 4.0,
        ["gdp_growth", "inflation"],
        descr,
        "us_macro.csv",
        as_frame,
        lambda pd: pd.PeriodIndex(labels, freq="Q", name="quarter"),
    )
    bunch.time_labels = labels
    return bunch
