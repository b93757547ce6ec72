"""The texts' functions are written once, on the chapter's page: every `# @save utils.X`
definition of a chapter has a byte-identical copy in utils/X.py (bookgen.saved)."""
import os
import shutil

from bookgen import saved
from tests.conftest import ROOT


def test_every_saved_copy_matches_its_chapter():
    problems = saved.differences()
    assert not problems, '\n'.join(problems)
    names = {(module, name) for _, name, module, _ in saved.saved_in_chapters()}
    # the fine-tuning text's transform and train are among them
    assert {('utils.data.transforms', 'transform'),
            ('utils.pretrained.finetune', 'train_fine_tuning'),
            ('utils.pretrained.finetune', 'FINE_TUNING_SETTINGS')} <= names


def _tree(tmp_path):
    """A copy of the chapters and utils to edit."""
    for folder in ('chapters', 'utils'):
        shutil.copytree(os.path.join(ROOT, folder), str(tmp_path / folder),
                        ignore=shutil.ignore_patterns('__pycache__'))
    return tmp_path


def test_an_edit_on_the_page_is_caught_named_and_synced(tmp_path):
    root = _tree(tmp_path)
    page = root / 'chapters' / 'fine_tuning.py'
    text = page.read_text(encoding='utf-8')
    edited = text.replace("    data = data.astype('float32')\n",
                          "    data = data.astype('float32')  # an edit\n", 1)
    assert edited != text
    page.write_text(edited, encoding='utf-8')
    problems = saved.differences(str(root))
    assert problems == ['utils.data.transforms.transform differs from its source in '
                        'chapters/fine_tuning.py: edit the chapter, then run '
                        '`python -m bookgen.saved`']
    assert saved.sync(str(root)) == ['utils.data.transforms']
    assert saved.differences(str(root)) == []
    module = (root / 'utils' / 'data' / 'transforms.py').read_text(encoding='utf-8')
    assert "    data = data.astype('float32')  # an edit\n" in module
    assert saved.sync(str(root)) == []  # nothing left to do


def test_a_copy_edited_in_utils_or_left_without_its_page_is_caught(tmp_path):
    root = _tree(tmp_path)
    module = root / 'utils' / 'pretrained' / 'finetune.py'
    module.write_text(module.read_text(encoding='utf-8').replace(
        "'learning_rate': learning_rate, 'wd': wd}", "'learning_rate': 0.1, 'wd': wd}"),
        encoding='utf-8')
    assert saved.differences(str(root)) == [
        'utils.pretrained.finetune.train_fine_tuning differs from its source in '
        'chapters/fine_tuning.py: '
        'edit the chapter, then run `python -m bookgen.saved`']
    page = root / 'chapters' / 'fine_tuning.py'
    page.write_text(page.read_text(encoding='utf-8').replace(
        '# @save utils.data.transforms\n', ''), encoding='utf-8')
    assert ('utils.data.transforms.transform says it is saved from chapters/fine_tuning.py, which '
            'does not mark it with `# @save utils.data.transforms`') in saved.differences(str(root))


def test_a_newly_marked_definition_is_appended_to_its_module(tmp_path):
    root = _tree(tmp_path)
    page = root / 'chapters' / 'train_basics.py'
    page.write_text(page.read_text(encoding='utf-8')
                    + '\n\n# @save utils.display.tables\ndef twice(x):\n    return 2 * x\n',
                    encoding='utf-8')
    assert saved.differences(str(root)) == [
        'utils.display.tables has no saved copy of twice (chapters/train_basics.py): run '
        '`python -m bookgen.saved`']
    assert saved.sync(str(root)) == ['utils.display.tables']
    assert (root / 'utils' / 'display' / 'tables.py').read_text(encoding='utf-8').endswith(
        '# @saved from chapters/train_basics.py: edit it there, then `python -m '
        'bookgen.saved`\ndef twice(x):\n    return 2 * x\n')
    assert saved.differences(str(root)) == []


# The functions and classes the texts define in their listings, and their names on the pages.
TEXT_DEFINITIONS = {
    'fine_tuning': ['transform', 'train_fine_tuning', 'classify_hotdog'],  # text 002
    'simple_object_detection': ['load_truncated_base', 'build_new_head',  # text 000
                                'ScaledMSELoss', 'custom_loss_function'],
    'custom_classes': ['truncated_base', 'build_new_head'],  # text 003
    'data_pipeline': ['csv_reader_dataset'],  # text 004
}


def test_the_texts_definitions_are_on_their_pages():
    """Read from the source (without running the chapters)."""
    for chapter, names in TEXT_DEFINITIONS.items():
        with open(os.path.join(ROOT, 'chapters', chapter + '.py'), encoding='utf-8') as f:
            defined = set(saved._statements(f.read()))
        missing = [name for name in names if name not in defined]
        assert not missing, 'chapters/%s.py does not define %s' % (chapter, missing)
