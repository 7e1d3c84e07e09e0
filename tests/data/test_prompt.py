"""kit.data.prompt: THE prompt template (Gemma turn format), the target and the response extraction."""

from __future__ import annotations

from kit.data.prompt import build_prompt, build_target, extract_response


def test_prompt_has_every_field_in_gemma_turn_format():
    p = build_prompt(
        rubrics=["Кафе", "Ресторан"], rating=4, keywords=["кофе", "десерт"], name="Ромашка", address="Омск"
    )
    assert p == (
        "<start_of_turn>user\nНапиши отзыв о месте.\nРубрики: Кафе; Ресторан\nОценка: 4 из 5\n"
        "Ключевые слова: кофе, десерт\nНазвание: Ромашка\nАдрес: Омск<end_of_turn>\n<start_of_turn>model\n"
    )


def test_prompt_leaves_out_empty_optional_fields():
    p = build_prompt(rubrics=["Кафе"], rating=2, keywords=[], name=None, address="")
    assert "Ключевые слова" not in p and "Название" not in p and "Адрес" not in p
    assert p.endswith("Оценка: 2 из 5<end_of_turn>\n<start_of_turn>model\n")


def test_target_and_response_extraction():
    p = build_prompt(rubrics=["Кафе"], rating=5)
    assert build_target("Супер") == "Супер<end_of_turn>"
    assert extract_response(p + "Супер\n<end_of_turn>лишнее") == "Супер"
    assert extract_response("Супер<eos>") == "Супер"
