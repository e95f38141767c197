"""What every method declares; the loop (``engine/dfad.py``) needs nothing else of it."""


class Method:
    """One way of training the student from the teacher. Subclasses set ``name`` (the
    ``--method`` value) and ``label`` (its row in the results table) and write
    ``play_round``; the rest has defaults that fit a method with a generator."""

    name = ""
    label = ""
    summary = ""             # one line for --help
    uses_generator = True  # False: the generator never plays, so it is neither saved nor drawn

    @classmethod
    def suffix(cls):
        """What its file and log names carry after the reference's names: a baseline never
        overwrites the DFAD run's files."""
        return f"-{cls.name}"

    @classmethod
    def row_label(cls, args):
        return cls.label

    @staticmethod
    def add_args(group, datasets):
        """The method's own flags (default None where they depend on the data set)."""

    @staticmethod
    def defaults(dataset):
        """Defaults this method gives to flags left unset (``None``) on the command line."""
        return {}

    def __init__(self, args=None, experiment=None, batch_size=None):
        """Built by the loop from the run's arguments, its Experiment and this process's
        batch size; a method without state of its own needs none of them."""

    def play_round(self, p, batch_size):
        """One round with the players ``p`` (``game.Players``); returns the last student
        loss and the generator's loss (detached)."""
        raise NotImplementedError

    def probe_images(self, samples):
        """The images the end-of-epoch diagnostics look at: by default this epoch's
        fixed-noise samples of the generator."""
        return samples
