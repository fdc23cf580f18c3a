# 类别（分类体系及其字段）与档案查询页。

cat-list-title = 档案类别
cat-path = 类别
cat-code = 类别代码
cat-code-hint = 2 至 12 位字母或数字，以字母开头，例如 CUST
cat-name = 名称
cat-parent = 上级类别
cat-top-level = （顶级）
cat-sensitivity = 密级
cat-department = 归属部门
cat-retention = 保管期限
cat-retention-years = 保管期限（年）
cat-years = { $years } 年
cat-field-count = 字段数
cat-none-yet = 尚无类别。
cat-new-title = 新建类别
cat-new-fields-later = 类别建立后，在其页面上定义字段。
cat-create = 建立类别
cat-summary = 密级：{ $sensitivity } · 归属部门：{ $department } · 保管 { $years } 年 · 字段版本 { $version }
cat-file-here = 在此类别下著录档案
cat-search-here = 查询此类别
cat-fields-title = 著录字段
cat-field-name = 字段代码
cat-field-name-hint = 小写字母、数字和 _，例如 customer_phone
cat-field-label = 显示名称
cat-field-type = 类型
cat-field-required = 必填
cat-field-sensitive = 敏感
cat-field-choices = 可选值（逗号分隔，仅用于选项字段）
cat-sensitive-yes = 敏感：加密存储，脱敏显示
cat-sensitive-no = 不敏感：明文存储，完整显示
cat-sensitive-auto = 自动：含个人信息即为敏感
cat-sensitive-stays = 敏感字段不能改为不敏感。如不再需要保护，请新增字段。
cat-make-sensitive-hint = 改为“敏感”并保存后，此字段已著录的值（所有档案及其历史版本）将被加密。
cat-looks-personal = 此字段看来含有{ $kind }。除非勾选下面的确认，它将作为敏感字段。
cat-confirm-not-sensitive = 我确认此字段不含个人信息，可以向所有有查询权限的人完整显示
cat-plain-personal-warning = 以下字段看来含有个人信息，但未设为敏感：{ $fields }。其值向所有员工完整显示。请在下方将其设为敏感，以加密并脱敏（包括已著录的值）。
cat-edit-title = 修改类别
cat-privacy-default = 默认保护隐私：类型为电话、证件号码或电子邮箱的字段，以及名称或显示名称像身份证号、证件号、姓名、联系人、电话、手机、邮箱、地址、银行卡或账号的字段，默认为敏感字段（加密存储，未获调阅授权者只能看到脱敏后的值），除非您明确设为不敏感并予以确认。不敏感的字段以明文存储，向所有员工完整显示，并可被模糊查询到。
cat-schema-rules = 字段建立后不能更改类型，如需更改请新增字段。新增字段对此前著录的档案为选填；删除字段后，旧值仍保留在档案的历史版本中。
cat-row-existing = 字段：{ $name }
cat-row-new = 新字段 { $n }
cat-rows-hint = 将某行的字段代码留空即删除该字段（空白行留空则不使用）。
cat-save = 保存类别

cat-sensitivity-public = 公开
cat-sensitivity-internal = 内部
cat-sensitivity-confidential = 秘密
cat-sensitivity-secret = 机密

cat-type-text = 文本
cat-type-number = 数字
cat-type-date = 日期
cat-type-phone = 电话号码
cat-type-id_number = 证件号码
cat-type-email = 电子邮箱
cat-type-choice = 选项

cat-personal-id_number = 证件号码
cat-personal-name = 个人姓名
cat-personal-phone = 电话号码
cat-personal-email = 电子邮箱
cat-personal-address = 地址
cat-personal-bank = 银行卡号或账号

flash-cat-created = 类别“{ $name }”已建立，请定义其著录字段。
flash-cat-saved = 类别“{ $name }”已保存。

field-code = 类别代码
field-parent_id = 上级类别
field-sensitivity = 密级
field-retention_years = 保管期限

search-title = 档案查询
search-q = 档号、题名或名称（可输入部分）
search-phone = 电话
search-phone-hint = 须输入完整号码，精确匹配（例如 13812345678，空格、短横线和 +86 会被忽略）；电话号码加密存储，输入部分号码查不到结果
search-id-number = 证件号码
search-id-number-hint = 须输入完整号码，精确匹配
search-category = 类别
search-any-category = （全部）
search-from = 著录日期自
search-to = 著录日期至
search-storeroom = 库房
search-shelf = 架
search-box = 盒
search-submit = 查询
search-masked-note = 敏感信息已脱敏显示。如需查看完整信息，请打开档案并申请调阅。
search-results-title = 查询结果
search-count = { $more ->
    [1] 第 { $first } 至 { $last } 条，下一页还有更多。
   *[other] { $first ->
        [1] 共找到 { $last } 条档案。
       *[other] 第 { $first } 至 { $last } 条。
    }
}
search-nothing = 没有符合条件的档案。
search-col-reference = 档号
search-col-title = 题名
search-col-category = 类别
search-col-details = 著录信息
search-col-location = 存放位置
search-col-filed = 著录时间
search-masked = 已脱敏
search-pages = 结果分页
search-page = 第 { $page } 页
search-status-in_store = 在库
search-status-on_loan = 借出
search-status-missing = 遗失
search-status-destroyed = 已销毁
